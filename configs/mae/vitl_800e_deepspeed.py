# MAE ViT-L/16 800e (vitl_800e.py) with DeepSpeed ZeRO-2 (configs/_base_/strategies/deepspeed_zero2.py): the same
# recipe and numbers, gradients and AdamW states sharded. Needs `pip install "deepspeed>=0.13"`.
#   bash tools/dist_train.sh configs/mae/vitl_800e_deepspeed.py 8
from mmengine._strategy.deepspeed import DeepSpeedOptimWrapper
from mmengine.config import read_base

with read_base():
    from .._base_.strategies.deepspeed_zero2 import *
    from .vitl_800e import *

optim_wrapper.type = DeepSpeedOptimWrapper
