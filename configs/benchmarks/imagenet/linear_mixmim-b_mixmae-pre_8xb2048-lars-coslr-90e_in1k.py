# Linear probe of a MixMAE-pretrained Swin-B/W14 (MixMIM) on ImageNet-1k. MixMIM published no linear-probe recipe
# or number (METHODS.md 4.7, 6, 8), so this is a documented default: MAE's protocol
# (linear_vit-b16_mae-pre_8xb2048-lars-coslr-90e_in1k.py = facebookresearch/mae main_linprobe.py, every setting
# inherited) on MixMIM's pooled final features. The encoder has no class token, so the feature is what
# MixMIMTransformer returns and what its fine-tune classifies: the average of the final-normed output tokens
# (1024-d). Frozen encoder (all 4 stages and the final norm), BatchNorm(affine=False) + linear head (trunc-normal
# 0.01), LARS lr = 0.1 x batch / 256 (6.4 for 16384), momentum 0.9, wd 0, 10 warm-up epochs + cosine to 0,
# 90 epochs, RandomResizedCrop + flip at 224 (the pretraining size, so the positions are not resized).
_base_ = './linear_vit-b16_mae-pre_8xb2048-lars-coslr-90e_in1k.py'

embed_dims = 1024  # the width of MixMIM-B's last stage (128 x 2^3)
num_stages = 4

model = dict(
    backbone=dict(
        # `_delete_`: VisionTransformer's arguments (out_type, final_norm, ...) do not apply to MixMIM's backbone
        _delete_=True,
        type='MIMMixMIMTransformer',
        mim_checkpoint=None,
        arch='base',
        img_size=224,
        window_size=[14, 14, 14, 7],
        drop_path_rate=0.0,
        frozen_stages=num_stages,
        init_cfg=None),
    neck=dict(input_features=embed_dims),
    head=dict(in_channels=embed_dims))
