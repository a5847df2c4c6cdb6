# The optimizer and loop of every pretraining config here (MAE's lineage: facebookresearch/mae main_pretrain.py,
# LightDXY/BootMAE run_pretraining.py, Sense-X/MixMIM main_pretrain.py): AdamW(0.9, 0.95), weight decay 0.05 except on
# norms and biases, an epoch-based loop. The numbers (batch, lr, epochs, warm-up, min lr) are each config's `recipe`;
# mim_zoo/engine/recipe.py derives optim_wrapper.optimizer.lr, train_dataloader.batch_size, param_scheduler (linear
# warm-up from 0, then half-cycle cosine, per iteration) and train_cfg.max_epochs from it at launch, after the
# --cfg-options and for the processes actually launched.
from mmengine.optim import OptimWrapper
from mmengine.runner import EpochBasedTrainLoop
from torch.optim import AdamW

from mim_zoo.engine.optim import MIMOptimWrapperConstructor

optim_wrapper = dict(
    constructor=MIMOptimWrapperConstructor,  # leaves the frozen target generators out, in one log line
    type=OptimWrapper,  # `tools/train.py --amp` switches to mmengine's AmpOptimWrapper (the official runs use AMP)
    optimizer=dict(type=AdamW, betas=(0.9, 0.95), weight_decay=0.05, fused=True),  # fused: same update, one pass
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),  # timm's add_weight_decay, as MAE
)
train_cfg = dict(type=EpochBasedTrainLoop)
