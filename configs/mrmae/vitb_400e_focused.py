# MR-MAE ViT-B/16, 400 epochs, with "focused mimicking": the visible 25% are drawn from CLIP's [CLS] attention of
# its last block, so the mimic loss concentrates on the tokens the teacher finds salient. The paper's exact rule is
# not public; this uses MILAN's attention masking (sampling without replacement proportional to the attention,
# mmpretrain models/selfsup/milan.py) [chosen]. mode="topk" keeps the most-attended tokens deterministically.
from mmengine.config import read_base

from mim_zoo.core.masking import AttentionMasking

with read_base():
    from .vitb_400e import *

model.masking = dict(type=AttentionMasking, ratio=0.75, mode="sample", temperature=1.0)
model.focus_teacher = "clip"
model.focus_block = -1
