# CPU twin of linear_mixmim-b_mixmae-pre_8xb2048-lars-coslr-90e_in1k.py: linear_vit_tiny_cpu.py (the embedded shapes,
# LARS, 2-epoch schedule, evaluation) with the frozen MixMIM backbone of the full config (pooled final features,
# BatchNorm without affine + linear head), for the tiny MixMIM Swin of configs/mixmae/tiny_cpu.py (32-d, depths
# 1/1/2, heads 1/2/4, 2-px patches, windows 4, 32 px; 128-d output). 4 iterations.
_base_ = './linear_vit_tiny_cpu.py'

embed_dims = 128  # 32 x 2^2
num_stages = 3

model = dict(
    # `_delete_`: VisionTransformer's arguments (out_type, final_norm, ...) do not apply to MixMIM's backbone
    backbone=dict(_delete_=True, type='MIMMixMIMTransformer', mim_checkpoint=None,
                  arch=dict(embed_dims=32, depths=[1, 1, 2], num_heads=[1, 2, 4]), img_size=32, patch_size=2,
                  window_size=[4, 4, 4], drop_path_rate=0.0, frozen_stages=num_stages, init_cfg=None),
    neck=dict(input_features=embed_dims),
    head=dict(in_channels=embed_dims))
