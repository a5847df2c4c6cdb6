# ADE20K UperNet on a MixMAE-pretrained Swin-B/W14 (MixMIM). MixMIM's segmentation code and settings were not
# released (METHODS.md 4.1, 8), so this is a documented default: the ViT recipe of
# seg_upernet_vit-b16_mae-pre_8xb2-160k_ade20k-512x512.py (AdamW lr 1e-4, wd 0.05 with none on 1-D parameters, layer
# decay 0.65 over the 24 blocks, 1500 warm-up iterations + poly, 160k x 16, 512 crops, slide 341, drop path 0.1) with
# the heads of mmseg's Swin UperNet (_base_/models/upernet_swin.py: UPerHead on the 4 stages, channels 512, FCN
# auxiliary head on stage 3, no neck). The backbone keeps MixMIM's windows [14, 14, 14, 7] (zero-padded) and
# interpolates its fixed sin-cos positions (mim_zoo/core/downstream/mixmim_pyramid.py).
_base_ = './seg_upernet_vit-b16_mae-pre_8xb2-160k_ade20k-512x512.py'

channels = [128, 256, 512, 1024]

model = dict(
    # `_delete_`: the BEiT backbone's arguments do not apply to MixMIM's
    backbone=dict(_delete_=True, type='MIMMixMIMPyramid', mim_checkpoint=None, arch='base',
                  window_size=[14, 14, 14, 7], drop_path_rate=0.1, out_indices=(0, 1, 2, 3)),
    neck=None,  # a pyramid already
    decode_head=dict(in_channels=channels, channels=512),
    auxiliary_head=dict(in_channels=channels[2]))
