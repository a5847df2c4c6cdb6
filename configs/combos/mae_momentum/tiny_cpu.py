# Tiny CPU twin of combos/mae_momentum: the momentum schedule's breakpoints stretched from 800 epochs to this run.
from mmengine.config import read_base

from mim_zoo.engine.hooks import MIMScheduleHook
from mim_zoo.core.targets import MomentumTarget

with read_base():
    from ...mae.tiny_cpu import *

model.target = dict(type=MomentumTarget, block=-1, final_norm=False, norm="ln")
custom_hooks = [
    dict(type=MIMScheduleHook, momentum=dict(type="scaled_piecewise_linear", reference_epochs=800,
                                             points=[(0, 0.999), (100, 0.9999), (400, 0.99999)])),
]
