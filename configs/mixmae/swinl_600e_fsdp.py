# MixMAE Swin-L/W14 600e (swinl_600e.py) sharded with FSDP: the same recipe and numbers, each MixMIM (Swin) block of
# the encoder and each transformer block of the decoder one shard unit (configs/_base_/strategies/fsdp.py).
#   bash tools/dist_train.sh configs/mixmae/swinl_600e_fsdp.py 16
from mmengine.config import read_base

with read_base():
    from .._base_.strategies.fsdp import *
    from .swinl_600e import *

# mmpretrain's MixMIMBlock (encoder stages) and timm's Block (MixMAE's decoder)
strategy.model_wrapper.auto_wrap_policy.block_names = ["MixMIMBlock", "Block"]
