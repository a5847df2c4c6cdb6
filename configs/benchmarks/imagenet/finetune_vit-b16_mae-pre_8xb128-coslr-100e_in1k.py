# End-to-end fine-tuning of a MAE-pretrained ViT-B/16 on ImageNet-1k, mmpretrain's MAE recipe
# (mmpretrain configs/mae/benchmarks/vit-base-p16_8xb128-coslr-100e_in1k.py = facebookresearch/mae FINETUNE.md):
# global average pooling + fc_norm, drop path 0.1, AdamW lr = 5e-4 x batch / 256, wd 0.05 (none on norms, biases,
# cls_token, pos_embed), layer-wise lr decay 0.65, 5 warm-up epochs + cosine to 1e-6, 100 epochs, RandAugment
# (m9, mstd 0.5), random erasing 0.25, Mixup 0.8 / CutMix 1.0, label smoothing 0.1, head trunc-normal 2e-5.
# tools/benchmark.py sets model.backbone.mim_checkpoint to the pretraining checkpoint.
_base_ = 'mmpretrain::mae/benchmarks/vit-base-p16_8xb128-coslr-100e_in1k.py'
custom_imports = dict(imports=['mim_zoo.core.downstream.mmpretrain'], allow_failed_imports=False)

num_gpus = 8
batch_per_gpu = 128
batch_size = num_gpus * batch_per_gpu
base_lr = 5e-4
lr = base_lr * batch_size / 256
layer_decay_rate = 0.65
max_epochs = 100
warmup_epochs = 5

train_dataloader = dict(batch_size=batch_per_gpu)
model = dict(backbone=dict(type='MIMVisionTransformer', mim_checkpoint=None, init_cfg=None))
optim_wrapper = dict(optimizer=dict(lr=lr), paramwise_cfg=dict(layer_decay_rate=layer_decay_rate))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - warmup_epochs, by_epoch=True, begin=warmup_epochs,
         end=max_epochs, eta_min=1e-6, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs)
