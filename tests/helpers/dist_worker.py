"""One process of the data-parallel equivalence check (``tests/test_distributed.py``).

    torchrun --nproc_per_node 2 tests/helpers/dist_worker.py CONFIG OUT_DIR   # 2 processes, gloo
    python tests/helpers/dist_worker.py CONFIG OUT_DIR                        # 1 process (also importable)

Builds the real mmengine Runner of ``CONFIG`` the way ``tools/train.py`` does (``prepare_config``; launcher
``pytorch`` under torchrun, so DDP over gloo), then

1. writes ``masks_rank<r>.pt``: the masks the model draws from the runner-seeded global random state;
2. runs ``STEPS`` optimizer steps (``model.train_step``: under torchrun DDP all-reduces the gradients) on a fixed
   global batch of ``GLOBAL_BATCH`` images with fixed masks, each process taking its contiguous share, and rank 0
   writes ``weights.pt``: the initial and final weights, and the gradients the optimizer saw at its first step
   (after DDP's all-reduce).
"""

from __future__ import annotations

import os
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)

import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.model import is_model_wrapper  # noqa: E402
from mmengine.runner import Runner  # noqa: E402
from mmpretrain.structures import DataSample  # noqa: E402

import mim_zoo  # noqa: E402,F401
from mim_zoo.masking import RandomMasking  # noqa: E402
from mim_zoo.runtime import prepare_config  # noqa: E402

GLOBAL_BATCH = 8
STEPS = 3
MASK_DRAWS = 4


def fixed_batch(image_size: int, grid: tuple[int, int], step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The global batch of ``step``: uint8 images ``[N, 3, S, S]`` (as the loader yields) and masks ``[N, L]``."""
    gen = torch.Generator().manual_seed(1000 + step)
    images = torch.randint(0, 256, (GLOBAL_BATCH, 3, image_size, image_size), generator=gen, dtype=torch.uint8)
    masks = RandomMasking(0.75)(GLOBAL_BATCH, grid, generator=gen)
    return images, masks


def build_runner(config: str, work_dir: str, launcher: str, seed: int = 0, lr: float = 1e-3) -> Runner:
    cfg = Config.fromfile(config)
    cfg.work_dir, cfg.launcher = work_dir, launcher
    cfg.randomness.seed = seed
    cfg.optim_wrapper.optimizer.lr = lr  # large enough that a wrong gradient shows in the weights
    prepare_config(cfg)
    return Runner.from_cfg(cfg)


def run(config: str, out_dir: str, launcher: str = "none", seed: int = 0) -> None:
    runner = build_runner(config, osp.join(out_dir, "work_dir"), launcher, seed)
    rank, world = runner.rank, runner.world_size
    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    grid, size = model.encoder.grid_size, model.encoder.grid_size[0] * model.encoder.patch_size
    probe = torch.zeros(2, 3, size, size)
    masks = torch.stack([model.resolve_mask(probe, None) for _ in range(MASK_DRAWS)])  # global RNG, as training
    torch.save(masks, osp.join(out_dir, f"masks_rank{rank}.pt"))

    optim_wrapper = runner.build_optim_wrapper(runner.cfg.optim_wrapper)
    first_grads: dict[str, torch.Tensor] = {}

    def record_grads(optimizer: object, args: object, kwargs: object) -> None:
        if not first_grads:
            first_grads.update({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})

    optim_wrapper.optimizer.register_step_pre_hook(record_grads)
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    share = GLOBAL_BATCH // world
    for step in range(STEPS):
        images, masks = fixed_batch(size, grid, step)
        part = slice(rank * share, (rank + 1) * share)
        samples = [DataSample().set_mask(m) for m in masks[part]]
        runner.model.train_step({"inputs": images[part], "data_samples": samples}, optim_wrapper=optim_wrapper)
    if rank == 0:
        final = {k: v.detach().clone() for k, v in model.state_dict().items()}
        torch.save({"initial": initial, "final": final, "grads": first_grads, "world_size": world}, osp.join(out_dir, "weights.pt"))


if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2], launcher="pytorch" if "LOCAL_RANK" in os.environ else "none")
