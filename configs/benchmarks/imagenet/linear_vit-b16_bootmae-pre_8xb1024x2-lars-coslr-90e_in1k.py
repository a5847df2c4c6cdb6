# Linear probe of a BootMAE-pretrained ViT-B/16 (LightDXY/BootMAE@d604b18 scripts/linear/*, MAE's main_linprobe.py):
# as the MAE probe, but the ViT is truncated to its first 10 blocks and the features are the average of the patch
# tokens through a LayerNorm (MAE's fc_norm, frozen at its 1/0 initialisation like the encoder), batch
# 8 GPUs x 1024 x 2 accumulation = 16384, LARS blr 0.1. (The README says LAYER=9; the script's --depth 10 is used.)
_base_ = './linear_vit-b16_mae-pre_8xb2048-lars-coslr-90e_in1k.py'

batch_per_gpu = 1024
accumulative_counts = 2
batch_size = _base_.num_gpus * batch_per_gpu
lr = _base_.base_lr * batch_size * accumulative_counts / 256  # 6.4 at 8 x 1024 x 2 = 16384
probe_depth = 10

train_dataloader = dict(batch_size=batch_per_gpu)
model = dict(
    backbone=dict(
        # `_delete_`: replaces the base's arch='base' string (a text-config merge cannot otherwise)
        arch=dict(_delete_=True, embed_dims=768, num_layers=probe_depth, num_heads=12, feedforward_channels=3072),
        frozen_stages=probe_depth,
        truncate_pretrained=True,
        out_type='avg_featmap',
        final_norm=False))
optim_wrapper = dict(optimizer=dict(lr=lr), accumulative_counts=accumulative_counts)
