# MAE ViT-L/16 800e (vitl_800e.py) sharded with FSDP: the same recipe and numbers, each transformer block of encoder
# and decoder one shard unit (configs/_base_/strategies/fsdp.py).
#   bash tools/dist_train.sh configs/mae/vitl_800e_fsdp.py 8
from mmengine.config import read_base

with read_base():
    from .._base_.strategies.fsdp import *
    from .vitl_800e import *
