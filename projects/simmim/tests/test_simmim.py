"""The out-of-package plugin: registered through custom_imports, trained by tools/train.py, and correct."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from mim_zoo.engine.config import prepare_config
from mim_zoo.registry import MASK_GENERATORS, MODELS, registered_names

REPO = Path(__file__).resolve().parents[3]
CONFIG = REPO / "projects/simmim/configs/tiny_cpu.py"


@pytest.fixture(scope="module")
def cfg():
    return prepare_config(Config.fromfile(str(CONFIG)))  # imports projects.simmim through custom_imports


def test_custom_imports_register_the_plugins(cfg):
    assert "SimMIM" in registered_names(MODELS) and "UnitMasking" in registered_names(MASK_GENERATORS)


def test_unit_masking_masks_whole_units():
    mask = MASK_GENERATORS.build(dict(type="UnitMasking", ratio=0.6, unit=2))(5, (8, 8),
                                                                              generator=torch.Generator().manual_seed(0))
    assert (mask.sum(1) == 40).all()  # ceil(16 units * 0.6) = 10 units of 4 tokens
    grid = mask.view(5, 4, 2, 4, 2)
    assert (grid.all(dim=(2, 4)) == grid.any(dim=(2, 4))).all()  # each 2x2 unit is all masked or all visible
    with pytest.raises(ValueError, match="not divisible"):
        MASK_GENERATORS.build(dict(type="UnitMasking", unit=3))(1, (8, 8))


def test_loss_is_l1_on_masked_pixels_and_gradients_flow(cfg):
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    mask = model.resolve_mask(images, None, generator=torch.Generator().manual_seed(2))
    pred = model.head(model.encode_with_mask_tokens(images, mask))
    expected = ((pred - model.encoder.patchify(images)).abs().mean(-1) * mask).sum() / (mask.sum() + 1e-5)
    loss = model(images, mode="loss", mask=mask)["loss_rec"]
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    # the mask token replaces masked embeddings: pixels under the mask do not reach the encoder
    hidden = images.clone()
    hidden[mask.view(2, 1, 8, 8).repeat_interleave(4, 2).repeat_interleave(4, 3).expand_as(images)] = 5.0
    assert torch.allclose(model.encode_with_mask_tokens(hidden, mask), model.encode_with_mask_tokens(images, mask),
                          atol=1e-5)


def test_tools_train_runs_the_project_config(tmp_path):
    result = subprocess.run([sys.executable, "tools/train.py", str(CONFIG), "--work-dir", str(tmp_path)], cwd=REPO,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "epoch_2.pth").is_file()
