"""The quickstart's own logic (the full run is the README command; its parts are tested elsewhere)."""

import subprocess
import sys
from pathlib import Path

from mmengine.config import Config, DictAction

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
import quickstart  # noqa: E402


def test_overrides_apply_to_every_tiny_config():
    assert set(quickstart.ALGORITHMS) >= {"mae", "bootmae", "mrmae", "mixmae"}
    for algorithm in quickstart.ALGORITHMS.values():
        cfg = Config.fromfile(str(quickstart.CATALOGUE.tiny_config(algorithm)))
        options = {}
        for item in quickstart.overrides(8, 32, 1.5e-3):
            key, value = item.split("=", 1)
            options[key] = DictAction._parse_iterable(value)
        cfg.merge_from_dict(options)
        assert cfg.train_dataloader.dataset.indices is None and cfg.train_dataloader.batch_size == 32
        assert cfg.train_cfg.max_epochs == 8 == cfg.param_scheduler[1].end
        assert cfg.param_scheduler[0].end == cfg.param_scheduler[1].begin == 1
        assert cfg.optim_wrapper.optimizer.lr == 1.5e-3 * 32 / 256


def test_bad_arguments_are_clear_errors():
    for args, message in ((["--algos", "nope"], "unknown algorithm"), (["--epochs", "1"], "at least 2")):
        result = subprocess.run([sys.executable, "tools/quickstart.py", *args], cwd=REPO, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode != 0 and message in result.stderr
