# ADE20K UperNet on a BootMAE-pretrained ViT-B/16 with BootMAE's own numbers (LightDXY/BootMAE@d604b18
# Segmentation/configs/bootmae/BootMAE_Base_800_PT.py, BEiT semantic_segmentation): the MAE/BEiT recipe with
# lr 4e-4, gradient clipping at norm 3 and mean = std = 127.5 (BootMAE's pixel normalisation). 49.12 mIoU reported.
# For a like-for-like comparison with MAE use the MAE recipe (tools/benchmark.py --protocol common).
_base_ = './seg_upernet_vit-b16_mae-pre_8xb2-160k_ade20k-512x512.py'

lr = 4e-4
mean = [127.5, 127.5, 127.5]
std = [127.5, 127.5, 127.5]

data_preprocessor = dict(mean=mean, std=std)
model = dict(data_preprocessor=dict(mean=mean, std=std))
optim_wrapper = dict(optimizer=dict(lr=lr), clip_grad=dict(max_norm=3.0))
