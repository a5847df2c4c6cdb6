# Runtime shared by every pretraining config: mmengine hooks, logging (console + TensorBoard), seeding, and the
# reliability, preflight and visualization hooks (mim_zoo/engine/hooks/). Those are *named* default hooks rather than
# custom_hooks, so a leaf config that assigns its own custom_hooks keeps them; switch one off with
# `--cfg-options default_hooks.<name>=None` (tools/train.py drops it).
from mmengine.hooks import DistSamplerSeedHook, IterTimerHook, LoggerHook, ParamSchedulerHook
from mmengine.visualization import LocalVisBackend, TensorboardVisBackend, Visualizer

from mim_zoo.engine.hooks import (
    AtomicCheckpointHook,
    CheckpointCompatHook,
    LossCurveHook,
    NonFiniteLossHook,
    PreflightHook,
    ReconstructionVisHook,
    RNGStateHook,
    RunEvidenceHook,
)

default_scope = "mim_zoo"

default_hooks = dict(
    timer=dict(type=IterTimerHook),
    logger=dict(type=LoggerHook, interval=50),  # progress, ETA, losses, lr
    param_scheduler=dict(type=ParamSchedulerHook),
    # mmengine's CheckpointHook with atomic writes, and old checkpoints deleted only after the new one is complete
    checkpoint=dict(type=AtomicCheckpointHook, interval=1, max_keep_ckpts=3, save_last=True),
    sampler_seed=dict(type=DistSamplerSeedHook),
    rng_state=dict(type=RNGStateHook),  # random states of every rank in each checkpoint: bit-exact --resume
    non_finite=dict(type=NonFiniteLossHook),  # stop at the first NaN/Inf loss, naming the last good checkpoint
    preflight=dict(type=PreflightHook),  # batch preconditions and image size, checked before the first iteration
    checkpoint_compat=dict(type=CheckpointCompatHook),  # load_from / --resume of another model fails, listing keys
    reconstruction_vis=dict(type=ReconstructionVisHook, interval=1),  # WORK_DIR/vis/reconstruction_epoch_N.png
    loss_curve=dict(type=LossCurveHook, interval=1),  # WORK_DIR/vis/loss_curve.png
    # config hash, commit, versions, device, images/s and matmul utilisation in every checkpoint (meta['evidence'])
    evidence=dict(type=RunEvidenceHook),
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
