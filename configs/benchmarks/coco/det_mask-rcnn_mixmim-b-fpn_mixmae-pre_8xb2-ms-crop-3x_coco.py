# COCO Mask R-CNN + FPN on a MixMAE-pretrained Swin-B/W14 (MixMIM). MixMIM's detection code and settings were not
# released (METHODS.md 4.1, 8), so this is a documented default: mmdet's Swin recipe
# (configs/swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py: multi-scale + crop augmentation, AdamW lr 1e-4,
# wd 0.05 with none on norms / positions / relative tables, 36 epochs, steps at 27 and 33, batch 16) with the
# backbone swapped for MixMIM's (windows [14, 14, 14, 7] zero-padded, interpolated sin-cos positions, one
# LayerNorm per level; mim_zoo/core/downstream/mixmim_pyramid.py), drop path 0.3 as for Swin-B.
_base_ = 'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py'
custom_imports = dict(imports=['mim_zoo.core.downstream.mmdet'], allow_failed_imports=False)

num_gpus = 8
batch_per_gpu = 2
batch_size = num_gpus * batch_per_gpu
channels = [128, 256, 512, 1024]

model = dict(
    # `_delete_`: mmdet's SwinTransformer arguments do not apply to MixMIM's backbone
    backbone=dict(_delete_=True, type='MIMMixMIMPyramid', mim_checkpoint=None, arch='base',
                  window_size=[14, 14, 14, 7], drop_path_rate=0.3, out_indices=(0, 1, 2, 3)),
    neck=dict(in_channels=channels))
train_dataloader = dict(batch_size=batch_per_gpu)
auto_scale_lr = dict(base_batch_size=batch_size)
