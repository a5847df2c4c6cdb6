"""tools/train.py end to end on every tiny CPU config, and its clear errors on bad input."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from .conftest import CATALOGUE, REPO

TINY_CONFIGS = CATALOGUE.configs(scale="tiny")


def train(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "tools/train.py"), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.parametrize("config", TINY_CONFIGS, ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_train_runs_each_tiny_config_to_completion(config, tmp_path):
    result = train(str(config), "--work-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    max_epochs = int(result.stdout.count("Saving checkpoint at"))
    assert max_epochs >= 1 and (tmp_path / "last_checkpoint").is_file()
    checkpoint = torch.load(tmp_path / f"epoch_{max_epochs}.pth")  # weights_only=True: mim_zoo.engine.compat
    assert checkpoint["meta"]["epoch"] == max_epochs and "state_dict" in checkpoint
    assert (tmp_path / "tiny_cpu.py").is_file()  # the resolved config beside the run
    log = next(tmp_path.glob("*/*.log")).read_text()
    assert "eta:" in log and "loss:" in log


def test_missing_config_is_a_clear_error(tmp_path):
    result = train("configs/nope/tiny_cpu.py", "--work-dir", str(tmp_path))
    assert result.returncode != 0 and "does not exist" in result.stderr


def test_missing_data_root_names_the_expected_layout(tmp_path):
    result = train("configs/mae/vitb_800e.py", "--work-dir", str(tmp_path),
                   "--cfg-options", f"train_dataloader.dataset.data_root={tmp_path}/imagenet")
    assert result.returncode != 0
    assert "training data not found" in result.stderr and "train/<class>/<image>.JPEG" in result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU message")
def test_amp_without_cuda_is_a_clear_error(tmp_path):
    result = train("configs/mae/tiny_cpu.py", "--work-dir", str(tmp_path), "--amp")
    assert result.returncode != 0 and "--amp needs a CUDA device" in result.stderr
