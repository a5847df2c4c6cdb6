# End-to-end fine-tuning of a MixMAE-pretrained Swin-B/W14 (MixMIM) on ImageNet-1k, mmpretrain's MixMIM recipe
# (mmpretrain configs/mixmim/benchmarks/mixmim-base_8xb128-coslr-100e_in1k.py; Sense-X/MixMIM
# exp/base_600ep/finetune.sh): drop path 0.1, AdamW lr = 5e-4 x batch / 256, wd 0.05 (none on norms/biases), layer
# decay 0.7, 5 warm-up epochs + cosine to 1e-6, 100 epochs, RandAugment, erasing 0.25, Mixup/CutMix, smoothing 0.1.
# Known difference to the official code (METHODS.md 4.6): there the head and final norm get lr scale 0.7, here 1.
_base_ = 'mmpretrain::mixmim/benchmarks/mixmim-base_8xb128-coslr-100e_in1k.py'
custom_imports = dict(imports=['mim_zoo.core.downstream.mmpretrain'], allow_failed_imports=False)

num_gpus = 8
batch_per_gpu = 128
batch_size = num_gpus * batch_per_gpu
base_lr = 5e-4
lr = base_lr * batch_size / 256

train_dataloader = dict(batch_size=batch_per_gpu)
model = dict(backbone=dict(type='MIMMixMIMTransformer', mim_checkpoint=None, init_cfg=None))
optim_wrapper = dict(optimizer=dict(lr=lr))
# The base's evaluation loader names collate_fn=dict(type='default_collate'); inherited across packages that dict
# gains a `_scope_` key, which mmengine would pass on to the function as an argument, so it is restated here.
val_dataloader = dict(collate_fn=dict(_delete_=True, type='default_collate'))
test_dataloader = val_dataloader
