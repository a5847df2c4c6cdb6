# Runtime shared by every pretraining config: mmengine hooks, logging (console + TensorBoard), seeding.
from mmengine.hooks import CheckpointHook, DistSamplerSeedHook, IterTimerHook, LoggerHook, ParamSchedulerHook
from mmengine.visualization import LocalVisBackend, TensorboardVisBackend, Visualizer

default_scope = "mim_zoo"

default_hooks = dict(
    timer=dict(type=IterTimerHook),
    logger=dict(type=LoggerHook, interval=50),  # progress, ETA, losses, lr
    param_scheduler=dict(type=ParamSchedulerHook),
    checkpoint=dict(type=CheckpointHook, interval=1, max_keep_ckpts=3, save_last=True),
    sampler_seed=dict(type=DistSamplerSeedHook),
)
custom_hooks = []

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
    dist_cfg=dict(backend="nccl"),  # tools/train.py switches to gloo on machines without CUDA
)
visualizer = dict(type=Visualizer, vis_backends=[dict(type=LocalVisBackend), dict(type=TensorboardVisBackend)])
log_processor = dict(window_size=10, by_epoch=True)
log_level = "INFO"
load_from = None
resume = False
# diff_rank_seed: every process draws its own masks (as each GPU does in the official code), reproducibly per seed.
randomness = dict(seed=0, diff_rank_seed=True, deterministic=False)
# Speed knobs (same maths; measured by `python -m benchmarks.throughput`, see benchmarks/README.md):
#   compile = True                                  torch.compile the model (mmengine): a compile, then faster steps
#   --amp [--cfg-options optim_wrapper.dtype=bfloat16]  mixed precision: fp16 with loss scaling, or bf16
#   --cfg-options model.encoder.grad_checkpointing=True  recompute block activations in backward: less memory
#   fused attention: timm's F.scaled_dot_product_attention, on by default; the paper configs' AdamW runs fused.
compile = False
