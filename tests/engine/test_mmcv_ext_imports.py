"""The compiler-free ``mmcv/_ext.py`` (``tools/mmcv_ext.py``) is in place whatever imports first.

Each case runs in a fresh interpreter where ``mmcv._ext`` resolves to the file the compiler-free mmcv wheel carries
(tests/helpers/mmcv_backend.py), whichever mmcv is installed: mmdet first, mmseg first, mmpretrain first (which
imports mmdet.models, which imports mmcv.ops, which imports mim_zoo: the cycle ``mim_zoo/__init__`` must not close),
mim_zoo's registries first, and mmengine's registry scopes. In each, mmcv's own Python ops (``mmcv.ops.roi_align``
with autograd, ``mmcv.ops.batched_nms``) must give torchvision's values and gradients.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers.mmcv_backend import REPO, SHIM

CHECK = textwrap.dedent(f"""
    import sys
    import mmcv
    import torch
    import torchvision

    assert mmcv._ext.__file__ == {str(SHIM)!r}, mmcv._ext.__file__
    assert "mim_zoo.core.downstream.mmdet" not in sys.modules
    import mmcv.ops

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 12, 16, generator=g, requires_grad=True)
    xy = torch.rand(20, 2, generator=g) * 40
    rois = torch.cat([torch.randint(2, (20, 1), generator=g).float(), xy, xy + torch.rand(20, 2, generator=g) * 30], 1)
    out = mmcv.ops.roi_align(x, rois, (7, 7), 0.25, 0, "avg", True)
    (grad,) = torch.autograd.grad(out.square().sum(), x)
    x_tv = x.detach().clone().requires_grad_()
    out_tv = torchvision.ops.roi_align(x_tv, rois, (7, 7), 0.25, 0, True)
    (grad_tv,) = torch.autograd.grad(out_tv.square().sum(), x_tv)
    assert torch.equal(out, out_tv) and torch.equal(grad, grad_tv)

    boxes = torch.cat([xy, xy + torch.rand(20, 2, generator=g) * 30], 1)
    scores, labels = torch.rand(20, generator=g), torch.randint(3, (20,), generator=g)
    _, keep = mmcv.ops.batched_nms(boxes, scores, labels, dict(type="nms", iou_threshold=0.5))
    assert set(keep.tolist()) == set(torchvision.ops.batched_nms(boxes, scores, labels, 0.5).tolist())
    print("ok")
""")

FIRST_IMPORTS = {
    "mmdet": "import mmdet.models",
    "mmseg": "import mmseg.models",
    "mmpretrain": "import mmpretrain.models",
    # mim_zoo's registries, then a MixMAE built (its MixMIM Swin imports mmpretrain, mmdet, mmcv.ops; a lookup alone
    # imports none of them)
    "mim_zoo": ("from mmengine.config import Config\nfrom mim_zoo.registry import MODELS\n"
                "MODELS.build(Config.fromfile('configs/mixmae/tiny_cpu.py').model)"),
    "registry_scope": ("from mmengine.registry import MODELS\n"  # a config's type='mmdet.MaskRCNN' / _scope_='mmdet'
                       "assert MODELS.get('mmdet.MaskRCNN').__module__.startswith('mmdet.')"),
}


def run_with_shim(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    script = tmp_path / "first_import.py"
    script.write_text(code)
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, str(REPO / "tests/helpers/mmcv_backend.py"), "torchvision", str(script)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("first", sorted(FIRST_IMPORTS))
def test_the_compiler_free_ext_is_in_place_whatever_imports_first(first, tmp_path):
    proc = run_with_shim(FIRST_IMPORTS[first] + "\n" + CHECK, tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]


def test_without_mim_zoo_the_shim_says_where_its_ops_come_from(tmp_path):
    proc = run_with_shim("import sys\nsys.modules['mim_zoo'] = None\nimport mmcv.ops\n", tmp_path)
    assert proc.returncode != 0
    assert "built by mim_zoo's tools/install.sh without compiled ops" in proc.stderr
    assert "MIM_ZOO_MMCV_OPS=compiled bash tools/install.sh" in proc.stderr
