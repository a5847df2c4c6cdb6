# CPU twin of seg_upernet_mixmim-b_mixmae-pre_8xb2-160k_ade20k-512x512.py: seg_upernet_vit_tiny_cpu.py (the toy ADE20K,
# pipelines, optimizer, 8-iteration schedule and sliding-window evaluation) with the MixMIM backbone and heads of the
# full config, for the tiny MixMIM Swin of configs/mixmae/tiny_cpu.py (32-d, depths 1/1/2, heads 1/2/4, 2-px
# patches, windows 4, 32 px): three stages at strides 2/4/8 instead of four at 4/8/16/32, so the heads read 3 levels.
_base_ = './seg_upernet_vit_tiny_cpu.py'

channels = [32, 64, 128]

model = dict(
    # `_delete_`: the BEiT backbone's arguments do not apply to MixMIM's
    backbone=dict(_delete_=True, type='MIMMixMIMPyramid', mim_checkpoint=None,
                  arch=dict(embed_dims=32, depths=[1, 1, 2], num_heads=[1, 2, 4]), pretrain_img_size=32,
                  patch_size=2, window_size=[4, 4, 4], drop_path_rate=0.1, out_indices=(0, 1, 2)),
    neck=None,
    decode_head=dict(in_channels=channels, in_index=[0, 1, 2]),
    auxiliary_head=dict(in_channels=channels[1], in_index=1))
