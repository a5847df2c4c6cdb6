"""Every pretraining config states a recipe that is resolved after the overrides and for the launched world size.

The schedule, lr, batch and loop of each config are derived by ``mim_zoo.engine.recipe`` once ``--cfg-options`` are
applied; these tests prove, for every config that trains, that an epoch override gives a correct schedule (warm-up
scaled by the recipe's rule, cosine ending at the last epoch), that the lr follows the processes launched, and that
the lr the scheduler produces step by step is the official MAE formula.
"""

from __future__ import annotations

import math

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.registry import PARAM_SCHEDULERS

from mim_zoo.core.schedules import evaluate
from mim_zoo.engine.config import load_config
from mim_zoo.engine.recipe import RECIPE_KEYS, resolve_recipe, warmup_length
from mim_zoo.engine.schedulers import WarmupCosineLR, warmup_cosine
from mim_zoo.registry import MODELS

from .conftest import CATALOGUE, REPO
from .helpers.training import build_runner, single_thread

# every pretraining config the catalogue lists (the algorithms' and the combinations') and the out-of-tree project's
PRETRAIN_CONFIGS = [*CATALOGUE.configs(), REPO / "projects/simmim/configs/tiny_cpu.py"]
IDS = [str(p.relative_to(REPO)) for p in PRETRAIN_CONFIGS]


def official_mae_lr(epoch: float, lr: float, min_lr: float, warmup_epochs: float, epochs: int) -> float:
    """facebookresearch/mae util/lr_sched.py:adjust_learning_rate, at the fractional epoch the loop passes it."""
    if epoch < warmup_epochs:
        return lr * epoch / warmup_epochs
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * (epoch - warmup_epochs) /
                                                           (epochs - warmup_epochs)))


def lr_sequence(cfg: Config, iters_per_epoch: int) -> list[float]:
    """The lr of every iteration of the run, from the config's scheduler converted to iterations as the Runner
    converts it (``convert_to_iter_based``), on a one-parameter optimizer."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.optim_wrapper.optimizer.lr)
    (spec,) = [dict(s) for s in cfg.param_scheduler]
    assert spec.pop("convert_to_iter_based") is True
    scheduler = PARAM_SCHEDULERS.get(spec.pop("type")).build_iter_from_epoch(
        optimizer, epoch_length=iters_per_epoch, **spec)
    lrs = []
    for _ in range(cfg.train_cfg.max_epochs * iters_per_epoch):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_every_training_config_is_covered():
    """Every config file of configs/<algo>/ and configs/combos/<name>/ trains, so every one is in the list."""
    on_disk = {p for p in (REPO / "configs").glob("*/*.py") if p.parent.name not in ("_base_", "benchmarks")}
    on_disk |= set((REPO / "configs/combos").glob("*/*.py"))
    assert on_disk <= set(PRETRAIN_CONFIGS) and len(on_disk) >= 25


@pytest.mark.parametrize("path", PRETRAIN_CONFIGS, ids=IDS)
@pytest.mark.parametrize("world", [1, 4])
def test_recipe_gives_batch_lr_and_schedule_for_the_launched_world(path, world):
    cfg = Config.fromfile(str(path))
    recipe = dict(cfg.recipe)
    assert set(recipe) == set(RECIPE_KEYS)
    resolved = resolve_recipe(cfg, world_size=world)
    total = world * recipe["batch_per_gpu"] * cfg.optim_wrapper.get("accumulative_counts", 1)
    assert resolved.total_batch == total and cfg.train_dataloader.batch_size == recipe["batch_per_gpu"]
    scale = total / 256 if recipe["lr_scaling"] == "linear" else 1.0
    assert cfg.optim_wrapper.optimizer.lr == pytest.approx(recipe["base_lr"] * scale)
    assert cfg.train_cfg.max_epochs == recipe["epochs"]
    (scheduler,) = cfg.param_scheduler
    assert (scheduler.begin, scheduler.end, scheduler.eta_min) == (0, recipe["epochs"], recipe["min_lr"])
    assert scheduler.warmup == warmup_length(recipe["epochs"], recipe["warmup_epochs"], recipe["full_warmup_from"])
    assert cfg.resolved_recipe.summary == resolved.summary() and f"= batch {total}" in resolved.summary()


@pytest.mark.parametrize("path", PRETRAIN_CONFIGS, ids=IDS)
def test_a_10_epoch_override_gives_a_10_epoch_schedule(path):
    """``recipe.epochs=10`` and ``train_cfg.max_epochs=10`` give the same, correct 10-epoch run; both at once,
    differently, is an error naming both."""
    by_recipe = load_config(path, {"recipe.epochs": 10})
    by_loop = load_config(path, {"train_cfg.max_epochs": 10})
    recipe = by_recipe.recipe
    warmup = recipe.warmup_epochs * min(1.0, 10 / recipe.full_warmup_from)  # the documented rule, by hand
    for cfg in (by_recipe, by_loop):
        assert cfg.train_cfg.max_epochs == 10 == cfg.recipe.epochs
        (scheduler,) = cfg.param_scheduler
        assert scheduler.end == 10 and scheduler.warmup == pytest.approx(warmup) and 0 <= warmup < 10
    assert by_recipe.param_scheduler == by_loop.param_scheduler
    assert by_recipe.optim_wrapper.optimizer.lr == by_loop.optim_wrapper.optimizer.lr
    # the lr the scheduler sets, iteration by iteration, is MAE's formula at the fractional epoch; it ends at min lr
    iters = 3
    lrs = lr_sequence(by_recipe, iters)
    peak = by_recipe.optim_wrapper.optimizer.lr
    expected = [official_mae_lr(i / iters, peak, recipe.min_lr, warmup, 10) for i in range(10 * iters)]
    assert lrs == pytest.approx(expected, rel=1e-9, abs=1e-15)
    assert lrs[0] == 0.0 and max(lrs) <= peak and lrs[-1] - recipe.min_lr < 0.01 * (peak - recipe.min_lr)
    with pytest.raises(ValueError, match=r"recipe\.epochs=10 and train_cfg\.max_epochs=20"):
        load_config(path, {"recipe.epochs": 10, "train_cfg.max_epochs": 20})


def test_mae_recipe_is_the_official_one():
    """facebookresearch/mae PRETRAIN.md / main_pretrain.py, at the official launch of 8 GPUs."""
    b800 = Config.fromfile(str(REPO / "configs/mae/vitb_800e.py"))
    resolved = resolve_recipe(b800, world_size=8)
    assert resolved.total_batch == 4096 and b800.optim_wrapper.optimizer.lr == pytest.approx(2.4e-3)
    assert b800.optim_wrapper.optimizer.betas == (0.9, 0.95) and b800.optim_wrapper.optimizer.weight_decay == 0.05
    assert b800.param_scheduler[0].warmup == 40 and b800.train_cfg.max_epochs == 800
    assert b800.model.masking.ratio == 0.75 and b800.model.target.norm == "patch"
    assert dict(b800.model.decoder) == dict(embed_dim=512, depth=8, num_heads=16)
    for impl, choice in b800.pipelines.items():  # every input pipeline the config can switch to
        crop = next(step for step in choice.pipeline if "crop_ratio_range" in step)
        assert crop.crop_ratio_range == (0.2, 1.0) and crop.interpolation == "bicubic", impl
        assert any(step.type.__name__.endswith("RandomFlip") and step.prob == 0.5 for step in choice.pipeline), impl
    b1600 = load_config(REPO / "configs/mae/vitb_1600e.py")
    assert b1600.train_cfg.max_epochs == b1600.param_scheduler[0].end == 1600 and b1600.param_scheduler[0].warmup == 40
    large = Config.fromfile(str(REPO / "configs/mae/vitl_800e.py"))
    assert large.model.encoder.arch == "vit_large_patch16_224"
    assert resolve_recipe(large, world_size=64).total_batch == 4096 and large.optim_wrapper.optimizer.lr == 2.4e-3


def test_the_summary_line_names_launch_batch_lr_and_schedule(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    cfg = load_config(REPO / "configs/mae/vitb_800e.py")
    assert cfg.resolved_recipe.summary == ("recipe: 4 processes x 512 x 1 = batch 2048 (recipe: 8 x 512 = 4096); "
                                           "lr 1.5e-4 x 2048/256 = 1.2e-3; 800 epochs, 40 warm-up, cosine to 0")
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.setenv("SLURM_NTASKS", "2")
    short = load_config(REPO / "configs/bootmae/vitb_800e.py", {"recipe.epochs": 10,
                                                                "optim_wrapper.accumulative_counts": 4})
    assert short.resolved_recipe.summary == (
        "recipe: 2 processes x 256 x 4 = batch 2048; lr 1.5e-4 x 2048/256 = 1.2e-3; "
        "10 epochs, 0.5 warm-up (40 x 10/800), cosine to 1e-4")


def test_explicit_lr_and_schedule_are_used_as_given_and_clash_with_their_recipe_keys():
    path = REPO / "configs/mae/tiny_cpu.py"
    fixed = load_config(path, {"optim_wrapper.optimizer.lr": 1e-3, "recipe.batch_per_gpu": 32})
    assert fixed.optim_wrapper.optimizer.lr == 1e-3 and fixed.recipe.lr_scaling == "none"
    assert "lr 1e-3 (lr_scaling 'none'" in fixed.resolved_recipe.summary
    with pytest.raises(ValueError, match=r"recipe\.base_lr=0\.01 and optim_wrapper\.optimizer\.lr=0\.001"):
        load_config(path, {"optim_wrapper.optimizer.lr": 1e-3, "recipe.base_lr": 1e-2})
    batch = load_config(path, {"train_dataloader.batch_size": 32})
    assert batch.recipe.batch_per_gpu == 32 and batch.optim_wrapper.optimizer.lr == pytest.approx(1.5e-4 * 32 / 256)
    step = [dict(type="MultiStepLR", by_epoch=True, milestones=[1], gamma=0.1)]
    given = load_config(path, {"param_scheduler": step})
    assert given.param_scheduler == step and "param_scheduler as given" in given.resolved_recipe.summary
    with pytest.raises(ValueError, match=r"param_scheduler is given explicitly, so recipe\.warmup_epochs"):
        load_config(path, {"param_scheduler": step, "recipe.warmup_epochs": 5})
    with pytest.raises(ValueError, match=r"iteration-based .* give param_scheduler"):
        load_config(path, {"train_cfg": dict(_delete_=True, type="IterBasedTrainLoop", max_iters=4)})
    iters = load_config(path, {"train_cfg": dict(_delete_=True, type="IterBasedTrainLoop", max_iters=4),
                               "param_scheduler": None})
    assert iters.param_scheduler is None and "max_epochs" not in iters.train_cfg


@pytest.mark.parametrize("options, message", [
    ({"recipe.epoch": 10}, r"unknown key\(s\) 'epoch' \(did you mean 'epochs'\?\)"),
    ({"recipe.warmup_epochs": 900}, r"warmup_epochs < full_warmup_from"),
    ({"recipe.epochs": 0}, r"recipe\.epochs must be a positive integer"),
    ({"recipe.lr_scaling": "sqrt"}, r"lr_scaling must be one of"),
    ({"recipe.min_lr": 1.0}, r"recipe\.min_lr=1 is not below this run's lr"),
    ({"auto_scale_lr": dict(enable=True, base_batch_size=256)}, r"auto_scale_lr\.enable would scale"),
])
def test_bad_recipes_are_one_clear_error(options, message):
    with pytest.raises(ValueError, match=message):
        load_config(REPO / "configs/mae/tiny_cpu.py", options)


def test_a_saved_config_shows_the_derived_numbers_and_follows_new_overrides(tmp_path):
    cfg = load_config(REPO / "configs/mixmae/swinb_600e.py")
    resolve_recipe(cfg, world_size=16)  # a resolved config as the Runner dumps it beside the run
    saved = tmp_path / "swinb_600e.py"
    cfg.dump(str(saved))
    text = saved.read_text()
    assert "lr=0.0012" in text and "max_epochs=600" in text and "batch_size=128" in text
    assert "recipe: 16 processes x 128 x 1 = batch 2048" in text and "WarmupCosineLR" in text
    again = load_config(saved, {"recipe.epochs": 10})  # one process now, and a 10-epoch run
    assert again.train_cfg.max_epochs == 10 == again.param_scheduler[0].end
    assert again.param_scheduler[0].warmup == pytest.approx(40 * 10 / 300)
    assert again.optim_wrapper.optimizer.lr == pytest.approx(1.5e-4 * 128 / 256)
    assert load_config(saved).optim_wrapper.optimizer.lr == pytest.approx(1.5e-4 * 128 / 256)


def test_epoch_schedules_of_the_hook_follow_an_epoch_override():
    """MIMScheduleHook's schedules are pure functions of (epoch, max_epochs): after ``recipe.epochs=10`` the
    loop's max_epochs is 10 and BootMAE's EMA breakpoints and feature-weight ramp land at the same fractions."""
    cfg = load_config(REPO / "configs/bootmae/vitb_800e.py", {"recipe.epochs": 10})
    hook, max_epochs = cfg.default_hooks.mim_schedule, cfg.train_cfg.max_epochs
    assert max_epochs == 10
    assert evaluate(hook.momentum, 1.25, max_epochs) == pytest.approx(0.9999)  # epoch 100 of 800
    assert evaluate(hook.momentum, 5.0, max_epochs) == pytest.approx(0.99999)  # epoch 400 of 800
    assert evaluate(hook.loss_weights.feature, 1.5, max_epochs) == pytest.approx(1.0)  # a quarter of the run
    assert evaluate(hook.loss_weights.feature, 0, max_epochs) == pytest.approx(0.4)


def test_warmup_cosine_scheduler_edge_cases():
    assert warmup_cosine(0, 10, 0, peak=1.0) == 1.0  # no warm-up: the cosine starts at the peak
    assert warmup_cosine(10, 10, 2, peak=1.0, floor=0.1) == pytest.approx(0.1)
    assert warmup_cosine(12, 10, 2, peak=1.0, floor=0.1) == pytest.approx(0.1)  # after the end: the floor
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match="must lie in"):
        WarmupCosineLR(optimizer, warmup=5, begin=0, end=5)
    with pytest.raises(ValueError, match="finite `end`"):
        WarmupCosineLR(optimizer, warmup=1)


@pytest.mark.parametrize("name", ["mae/vitb_800e.py", "mae/vitl_800e.py"])
def test_full_size_models_build(name):
    model = MODELS.build(Config.fromfile(str(REPO / "configs" / name)).model)
    assert model.encoder.grid_size == (14, 14)


class RecordLr(Hook):
    priority = "LOWEST"

    def __init__(self) -> None:
        self.lrs: list[float] = []

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self.lrs.append(runner.optim_wrapper.get_lr()["lr"][0])


def test_a_real_run_follows_the_resolved_schedule_and_saves_the_derived_numbers(tmp_path):
    """tools/train.py's path (load_config + prepare_config + Runner) on the tiny MAE: 3 epochs of 5 iterations with
    ``train_cfg.max_epochs=3``: the lr of every iteration is MAE's formula; WORK_DIR/tiny_cpu.py shows the recipe."""
    options = {"train_cfg.max_epochs": 3, "default_hooks.reconstruction_vis": None, "default_hooks.loss_curve": None,
               "default_hooks.checkpoint.interval": 3}
    with single_thread():
        runner = build_runner("configs/mae/tiny_cpu.py", str(tmp_path), options)
        recorder = RecordLr()
        runner.register_hook(recorder)
        runner.train()
    peak, warmup = 1.5e-4 * 16 / 256, 40 * 3 / 800
    assert recorder.lrs == pytest.approx([official_mae_lr(i / 5, peak, 0.0, warmup, 3) for i in range(15)],
                                         rel=1e-9, abs=1e-15)
    saved = (tmp_path / "tiny_cpu.py").read_text()
    assert "max_epochs=3" in saved and "recipe: 1 process x 16 x 1 = batch 16" in saved and "warmup=0.15" in saved
