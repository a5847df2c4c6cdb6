# DeepSpeed ZeRO stage 2 through mmengine's FlexibleRunner: gradients and AdamW states sharded across the GPUs, the
# weights replicated. Import it next to a leaf config and set optim_wrapper.type = DeepSpeedOptimWrapper (see
# configs/mae/vitl_800e_deepspeed.py). fp32 by default, i.e. the numbers of the plain config; for bf16 set
# strategy.bf16 = dict(enabled=True) and strategy.inputs_to_half = ["inputs"].
# Needs CUDA GPUs and `pip install "deepspeed>=0.13"` (not part of the tested stack).
from mmengine._strategy import DeepSpeedStrategy
from mmengine.runner import FlexibleRunner

runner_type = FlexibleRunner
strategy = dict(
    type=DeepSpeedStrategy,
    zero_optimization=dict(stage=2, overlap_comm=True, contiguous_gradients=True, reduce_scatter=True,
                           allgather_bucket_size=int(5e8), reduce_bucket_size=int(5e8)),
)
