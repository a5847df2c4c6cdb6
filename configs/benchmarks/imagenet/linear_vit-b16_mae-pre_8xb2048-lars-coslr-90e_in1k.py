# Linear probe of a MAE-pretrained ViT-B/16 on ImageNet-1k, mmpretrain's MAE recipe
# (mmpretrain configs/mae/benchmarks/vit-base-p16_8xb2048-linear-coslr-90e_in1k.py, = facebookresearch/mae
# main_linprobe.py / LINPROBE.md): the class token after the final norm, frozen encoder, BatchNorm(affine=False) +
# linear head (trunc-normal 0.01), LARS lr = 0.1 x batch / 256 (6.4 for 16384), momentum 0.9, wd 0, 10 warm-up
# epochs + cosine to 0, 90 epochs, RandomResizedCrop + flip.
# The encoder comes from a mim_zoo pretraining checkpoint: tools/benchmark.py sets model.backbone.mim_checkpoint
# (by hand: --cfg-options model.backbone.mim_checkpoint=work_dirs/<pretrain cfg>/epoch_N.pth).
_base_ = 'mmpretrain::mae/benchmarks/vit-base-p16_8xb2048-linear-coslr-90e_in1k.py'
custom_imports = dict(imports=['mim_zoo.core.downstream.mmpretrain'], allow_failed_imports=False)

num_gpus = 8
batch_per_gpu = 2048
accumulative_counts = 1
batch_size = num_gpus * batch_per_gpu
base_lr = 0.1
lr = base_lr * batch_size * accumulative_counts / 256  # per optimizer step: 6.4 at 16384

train_dataloader = dict(batch_size=batch_per_gpu)
model = dict(backbone=dict(type='MIMVisionTransformer', mim_checkpoint=None, init_cfg=None))
# plain fp32 here; `--amp` (tools/train.py, tools/benchmark.py) switches to AmpOptimWrapper as in the original
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(lr=lr), accumulative_counts=accumulative_counts)
