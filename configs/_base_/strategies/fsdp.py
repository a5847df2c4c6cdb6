# Fully sharded data parallel (torch FSDP) through mmengine's FlexibleRunner, for models whose weights, gradients and
# AdamW states crowd one GPU (ViT-L/H, Swin-L). Import it next to a leaf config (see configs/mae/vitl_800e_fsdp.py).
# Every transformer block is one FSDP unit (mim_zoo.engine.sharding.wrap_blocks, by class name); encoders with other
# block classes (e.g. Swin) add theirs: strategy.model_wrapper.auto_wrap_policy.block_names = ["Block", "SwinBlock"].
# Needs CUDA GPUs (mmengine places each shard on the process's GPU).
from mmengine._strategy import FSDPStrategy
from mmengine.runner import FlexibleRunner

from mim_zoo.engine.sharding import wrap_blocks

runner_type = FlexibleRunner
strategy = dict(
    type=FSDPStrategy,
    model_wrapper=dict(
        auto_wrap_policy=dict(type=wrap_blocks, block_names=["Block"]),  # timm's ViT block (encoder and decoder)
        use_orig_params=True,  # units mix trainable and frozen tensors (fixed sin-cos positions, EMA/teacher copies)
    ),
    state_dict_cfg="full",  # rank 0 writes ordinary full checkpoints: resumable, exportable, drawable
)
