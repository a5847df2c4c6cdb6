"""The quickstart's own logic (the full run is the README command; its parts are tested elsewhere)."""

import subprocess
import sys
import warnings
from pathlib import Path

from mmengine.config import DictAction

from mim_zoo.engine.config import load_config, prepare_config

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
import quickstart  # noqa: E402


def test_overrides_apply_to_every_tiny_config():
    assert set(quickstart.ALGORITHMS) >= {"mae", "bootmae", "mrmae", "mixmae"}
    for algorithm in quickstart.ALGORITHMS.values():
        options = {}
        for item in quickstart.overrides(8, 32, 1.5e-3):
            key, value = item.split("=", 1)
            options[key] = DictAction._parse_iterable(value)
        cfg = load_config(quickstart.CATALOGUE.tiny_config(algorithm), options)  # as tools/train.py reads it
        assert cfg.train_dataloader.dataset.indices is None and cfg.train_dataloader.batch_size == 32
        assert cfg.train_cfg.max_epochs == 8 == cfg.param_scheduler[0].end
        assert 0 < cfg.param_scheduler[0].warmup < 8 and cfg.param_scheduler[0].eta_min == 0.0
        assert cfg.optim_wrapper.optimizer.lr == 1.5e-3 * 32 / 256


def test_bad_arguments_are_clear_errors():
    for args, message in ((["--algos", "nope"], "unknown algorithm"), (["--epochs", "0"], "at least 1")):
        result = subprocess.run([sys.executable, "tools/quickstart.py", *args], cwd=REPO, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode != 0 and message in result.stderr


def test_the_quickstart_runs_are_prepared_without_a_warning():
    """The quickstart used to warn about itself ("the config computes its learning rate for a total batch of 16 ...
    but this run has ... 32"); with the recipe resolved for the run's own batch there is nothing to warn about, and
    the summary line states the batch and lr the run uses."""
    options = {}
    for item in quickstart.overrides(8, 32, 1.5e-3):
        key, value = item.split("=", 1)
        options[key] = DictAction._parse_iterable(value)
    for algorithm in quickstart.ALGORITHMS.values():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cfg = prepare_config(load_config(quickstart.CATALOGUE.tiny_config(algorithm), options))
        assert not [str(w.message) for w in caught], algorithm
        assert cfg.resolved_recipe.summary.startswith(  # the line prepare_config logs
            "recipe: 1 process x 32 x 1 = batch 32; lr 1.5e-3 x 32/256 = 1.875e-4; 8 epochs")
