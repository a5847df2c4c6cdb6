"""One process of the data-parallel equivalence check (``tests/test_distributed.py``).

    torchrun --nproc_per_node 2 tests/helpers/dist_worker.py OUT_DIR CONFIG...   # 2 processes, DDP over gloo
    python tests/helpers/dist_worker.py OUT_DIR CONFIG...                        # 1 process (or import run())

For each config it builds the real mmengine Runner the way ``tools/train.py`` does (``prepare_config``; launcher
``pytorch`` under torchrun), then

1. writes ``<algo>/masks_rank<r>.pt``: masks the model draws from the runner-seeded global random state;
2. runs ``STEPS`` optimizer steps with ``model.train_step`` (under torchrun DDP all-reduces the gradients) on a fixed
   global batch of ``GLOBAL_BATCH`` images and masks (drawn by the config's own mask generator), each process taking
   its contiguous share; rank 0 writes ``<algo>/weights.pt``: initial and final weights and the gradients the
   optimizer saw at its first step.
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
from mim_zoo.engine.config import prepare_config  # noqa: E402

GLOBAL_BATCH = 8
STEPS = 3
MASK_DRAWS = 4


def algo_name(config: str) -> str:
    return osp.basename(osp.dirname(config))


def fixed_batch(model: torch.nn.Module, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The global batch of ``step``: uint8 images ``[N, 3, S, S]`` (as the loader yields) and masks ``[N, L]``."""
    encoder = model.encoder
    size = encoder.grid_size[0] * encoder.patch_size
    gen = torch.Generator().manual_seed(1000 + step)
    images = torch.randint(0, 256, (GLOBAL_BATCH, 3, size, size), generator=gen, dtype=torch.uint8)
    return images, model.masking(GLOBAL_BATCH, encoder.grid_size, generator=gen)


def build_runner(config: str, work_dir: str, launcher: str, seed: int = 0, lr: float = 1e-3) -> Runner:
    cfg = Config.fromfile(osp.join(ROOT, config))
    cfg.work_dir, cfg.launcher = work_dir, launcher
    cfg.randomness.seed = seed
    cfg.optim_wrapper.optimizer.lr = lr  # large enough that a wrong gradient shows in the weights
    prepare_config(cfg)
    return Runner.from_cfg(cfg)


def unwrap(runner: Runner) -> torch.nn.Module:
    return runner.model.module if is_model_wrapper(runner.model) else runner.model


def draw_masks(runner: Runner) -> torch.Tensor:
    """``[MASK_DRAWS, 2, L]`` masks drawn as in training: from the global random state the Runner seeded."""
    model = unwrap(runner)
    size = model.encoder.grid_size[0] * model.encoder.patch_size
    probe = torch.zeros(2, 3, size, size)
    return torch.stack([model.resolve_mask(probe, None) for _ in range(MASK_DRAWS)])


def train_steps(runner: Runner) -> dict:
    """``STEPS`` steps on this process's share of the fixed batches; weights before/after, first-step gradients."""
    model = unwrap(runner)
    optim_wrapper = runner.build_optim_wrapper(runner.cfg.optim_wrapper)
    first_grads: dict[str, torch.Tensor] = {}

    def record_grads(optimizer: object, args: object, kwargs: object) -> None:  # runs after DDP's all-reduce
        if not first_grads:
            first_grads.update({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})

    optim_wrapper.optimizer.register_step_pre_hook(record_grads)
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    share = GLOBAL_BATCH // runner.world_size
    part = slice(runner.rank * share, (runner.rank + 1) * share)
    for step in range(STEPS):
        images, masks = fixed_batch(model, step)
        samples = [DataSample().set_mask(m) for m in masks[part]]
        runner.model.train_step({"inputs": images[part], "data_samples": samples}, optim_wrapper=optim_wrapper)
    final = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return {"initial": initial, "final": final, "grads": first_grads, "world_size": runner.world_size}


def run(out_dir: str, configs: list[str], launcher: str = "none") -> None:
    for config in configs:
        folder = osp.join(out_dir, algo_name(config))
        os.makedirs(folder, exist_ok=True)
        runner = build_runner(config, osp.join(folder, "work_dir"), launcher)
        torch.save(draw_masks(runner), osp.join(folder, f"masks_rank{runner.rank}.pt"))
        result = train_steps(runner)
        if runner.rank == 0:
            torch.save(result, osp.join(folder, "weights.pt"))


if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2:], launcher="pytorch" if "LOCAL_RANK" in os.environ else "none")
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
