# Combination no paper trained: MAE whose decoder regresses momentum-encoder features instead of pixels - BootMAE's
# bootstrapped target (EMA encoder on the full image, last block before the final norm, parameter-free LayerNorm on
# both sides; LightDXY/BootMAE run_pretraining.py) behind MAE's plain 8x512 decoder, without BootMAE's pixel branch
# and target-aware decoders. The MAE ViT-B/16 800-epoch recipe; the EMA momentum follows BootMAE's base schedule
# (utils.py:adjust_ema_momentum with --model_ema_dynamic): 0.999 -> 0.9999 at epoch 100 -> 0.99999 at epoch 400, the
# breakpoints stretched with the run's length (100/800 and 400/800 of it).
from mmengine.config import read_base

from mim_zoo.core.targets import MomentumTarget
from mim_zoo.engine.hooks import MIMScheduleHook

with read_base():
    from ...mae.vitb_800e import *

model.target = dict(type=MomentumTarget, block=-1, final_norm=False, norm="ln")
default_hooks.mim_schedule = dict(type=MIMScheduleHook, momentum=dict(
    type="scaled_piecewise_linear", points=[(0, 0.999), (100, 0.9999), (400, 0.99999)], reference_epochs=800))
