# End-to-end fine-tuning of a BootMAE-pretrained ViT-B/16 (LightDXY/BootMAE@d604b18
# scripts/finetune/bash_fine_BootMAE_Base_800.sh, BEiT's run_class_finetuning.py): the MAE recipe with BootMAE's
# numbers: batch 8 x 256 = 2048, lr 5e-3 as given (the script does not scale it), layer decay 0.6
# (0.6^(13 - depth), head 1.0), 20 warm-up epochs, min lr 1e-6, model EMA 0.9998 (evaluated), mean pooling +
# fc_norm, drop path 0.1, RandAugment m9-mstd0.5, Mixup 0.8 / CutMix 1.0, label smoothing 0.1, erasing 0.25.
_base_ = './finetune_vit-b16_mae-pre_8xb128-coslr-100e_in1k.py'

num_gpus = 8
batch_per_gpu = 256
batch_size = num_gpus * batch_per_gpu
lr = 5e-3
layer_decay_rate = 0.6
max_epochs = 100
warmup_epochs = 20
ema_decay = 0.9998

train_dataloader = dict(batch_size=batch_per_gpu)
optim_wrapper = dict(optimizer=dict(lr=lr), paramwise_cfg=dict(layer_decay_rate=layer_decay_rate))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - warmup_epochs, by_epoch=True, begin=warmup_epochs,
         end=max_epochs, eta_min=1e-6, convert_to_iter_based=True),
]
# mmengine's EMA momentum is the weight of the new parameters: 1 - decay
custom_hooks = [dict(type='EMAHook', momentum=1 - ema_decay, priority='ABOVE_NORMAL')]
