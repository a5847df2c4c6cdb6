# Tiny CPU twin of combos/mae_momentum: configs/mae/tiny_cpu.py with the same target and momentum schedule (its
# breakpoints stretched from 800 epochs to this run).
from mmengine.config import read_base

from mim_zoo.core.targets import MomentumTarget
from mim_zoo.engine.hooks import MIMScheduleHook

with read_base():
    from ...mae.tiny_cpu import *

model.target = dict(type=MomentumTarget, block=-1, final_norm=False, norm="ln")
default_hooks.mim_schedule = dict(type=MIMScheduleHook, momentum=dict(
    type="scaled_piecewise_linear", points=[(0, 0.999), (100, 0.9999), (400, 0.99999)], reference_epochs=800))
