"""Device handling on the paths a GPU run takes (STYLE R15): masks, targets, losses and gradients follow the images'
device; mask generators draw the same masks on every device; losses stay float32 under mixed precision; paper-size
models build on the meta device (no memory) and their encoders export to their canonical libraries there; the
device half of the input pipeline keeps its pixels where the model is.

Here the devices are "cpu" and "meta" (shapes and devices only: nothing is computed on meta); on a machine with
CUDA, "cuda" joins them, and ``tools/device_check.sh`` runs this file there.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
from mmengine.config import Config

from benchmarks.common import walk_dicts
from mim_zoo.core.masking import RandomMasking
from mim_zoo.engine.config import prepare_config
from mim_zoo.engine.pipeline.geometry import CropBox, orient, resized_crop
from mim_zoo.registry import MASK_GENERATORS, MODELS

from .conftest import CATALOGUE, REPO

CUDA = ["cuda"] if torch.cuda.is_available() else []
DEVICES = ["cpu", "meta", *CUDA]
COMPUTE = ["cpu", *CUDA]  # where whole steps run (on meta, mask_to_indices cannot read the count of masked tokens)
TINY_CONFIGS = [str(p.relative_to(REPO)) for p in CATALOGUE.configs(scale="tiny")]


def mask_generators() -> list[str]:
    MASK_GENERATORS.import_from_location()
    return sorted(MASK_GENERATORS.module_dict)


def build_tiny(config: str) -> torch.nn.Module:
    cfg = prepare_config(Config.fromfile(str(REPO / config)))  # writes the synthetic teacher files
    torch.manual_seed(0)
    return MODELS.build(cfg.model).train()


def images_for(model: torch.nn.Module, device: str, batch: int = 4) -> torch.Tensor:
    grid, patch = model.encoder.grid_size, model.encoder.patch_size
    shape = (batch, 3, grid[0] * patch, grid[1] * patch)
    return torch.randn(shape, generator=torch.Generator().manual_seed(1)).to(device)


# --- masks ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", mask_generators())
def test_every_mask_generator_returns_the_cpu_draw_on_the_device_asked_for(name, device):
    generator = MASK_GENERATORS.build(dict(type=name))
    context = {key: torch.rand(4, 196, generator=torch.Generator().manual_seed(2)) for key in generator.context_keys}
    on_cpu = generator(4, (14, 14), generator=torch.Generator().manual_seed(0), **context)
    mask = generator(4, (14, 14), device=device, generator=torch.Generator().manual_seed(0),
                     **{key: value.to(device) for key, value in context.items()})  # e.g. attention on the GPU
    assert mask.device.type == device and mask.dtype == torch.bool and mask.shape == (4, 196)
    if device != "meta":
        assert torch.equal(mask.cpu(), on_cpu)  # one seed, one mask, wherever the run is


@pytest.mark.skipif(not CUDA, reason="needs a CUDA torch.Generator")
def test_a_generator_on_the_gpu_is_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"takes a CPU torch.Generator, got one on cuda.*torch.Generator\(\)"):
        RandomMasking()(2, (4, 4), device="cuda", generator=torch.Generator(device="cuda"))


# --- algorithms: masks, targets, losses and gradients on the images' device ------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("config", TINY_CONFIGS)
def test_masks_and_targets_follow_the_images_device(config, device):
    model = build_tiny(config).to(device)
    images = images_for(model, device)
    mask = model.resolve_mask(images, generator=torch.Generator().manual_seed(0))
    assert mask.device == images.device and mask.dtype == torch.bool
    from_collate = model.resolve_mask(images, torch.zeros_like(mask, device="cpu"))  # a mask made on the CPU
    assert from_collate.device == images.device
    num_tokens = model.encoder.grid_size[0] * model.encoder.grid_size[1]
    for target in model.targets():
        out = target(images, model.encoder)
        assert out.device == images.device and out.dtype == torch.float32
        assert out.shape == (images.shape[0], num_tokens, target.dim)


AUTOCAST = [(device, dtype) for device in COMPUTE for dtype in (None, torch.bfloat16)]
AUTOCAST += [("cuda", torch.float16)] if CUDA else []


@pytest.mark.parametrize("device,dtype", AUTOCAST, ids=[f"{d}-{str(t).removeprefix('torch.')}" for d, t in AUTOCAST])
@pytest.mark.parametrize("config", TINY_CONFIGS)
def test_a_step_stays_on_the_device_with_float32_losses(config, device, dtype):
    model = build_tiny(config).to(device)
    images = images_for(model, device)
    with torch.autocast(device, dtype=dtype, enabled=dtype is not None):
        losses = model(images, mode="loss")
    for name, value in losses.items():
        assert value.device == images.device and value.dtype == torch.float32, name
        assert torch.isfinite(value), name
    sum(value for name, value in losses.items() if "loss" in name).backward()
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    assert all(p.grad is not None and p.grad.device == images.device for _, p in trainable)
    frozen = [p for p in model.parameters() if not p.requires_grad]
    assert all(p.grad is None for p in frozen)


# --- paper-size models on the meta device ---------------------------------------------------------------------------
def paper_models() -> list[str]:
    """One paper-size config per distinct model (schedule variants share theirs)."""
    seen, configs = set(), []
    for entry in CATALOGUE.pretraining():
        if entry.config is None or entry.scale == "tiny":
            continue
        key = json.dumps(Config.fromfile(str(REPO / entry.config)).model.to_dict(), sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            configs.append(entry.config)
    return configs


def meta_teacher_files(model_cfg: dict, folder: Path) -> None:
    """Point every TeacherTarget at a timm-layout state dict of its architecture saved from the meta device: the
    shapes of the real file (OpenAI CLIP, DINO), no values, a few KB."""
    for index, node in enumerate(n for n in walk_dicts(model_cfg) if "TeacherTarget" in str(n.get("type"))):
        head = {} if node.get("project") else {"num_classes": 0}
        with torch.device("meta"):
            teacher = timm.create_model(node["arch"], pretrained=False, **head, **dict(node.get("model_kwargs") or {}))
        node["checkpoint"] = str(folder / f"teacher_{index}.pth")
        torch.save(teacher.state_dict(), node["checkpoint"])


@pytest.mark.parametrize("config", paper_models())
def test_paper_size_models_build_on_meta_and_export_to_their_canonical_encoder(config, tmp_path):
    """No memory: every tensor stays on meta. mmpretrain's MixMIMTransformer cannot be built there (its __init__
    reads drop-path rates with ``.item()``, mmpretrain/models/backbones/mixmim.py), so MixMAE is built on the CPU."""
    cfg = Config.fromfile(str(REPO / config))
    model_cfg = cfg.model.to_dict()
    meta_teacher_files(model_cfg, tmp_path)
    device = "cpu" if cfg.model.encoder.type.__name__ == "MixMIMEncoder" else "meta"
    with torch.device(device):
        model = MODELS.build(model_cfg)
        canonical = model.encoder.build_canonical()
    assert {t.device.type for t in (*model.parameters(), *model.buffers())} == {device}
    result = canonical.load_state_dict(model.encoder.export_state_dict(), strict=True)  # shapes checked on meta too
    assert not result.missing_keys and not result.unexpected_keys
    encoder_params = sum(p.numel() for p in model.encoder.parameters())
    assert encoder_params == sum(p.numel() for p in canonical.parameters()) > 80e6  # ViT-B/L, Swin-B/L sizes


# --- the input pipeline's device half ------------------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
def test_crops_are_oriented_resized_and_kept_on_the_device(device):
    image = torch.randint(0, 256, (3, 300, 400), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    out = resized_crop(orient(image.to(device), 6), CropBox(10, 20, 200, 150), (224, 224), "bicubic")
    assert out.device.type == device and out.dtype == torch.uint8 and out.shape == (3, 224, 224)
    if device == "cuda":  # the float kernel there, the uint8 kernel on the CPU: within one grey level
        on_cpu = resized_crop(orient(image, 6), CropBox(10, 20, 200, 150), (224, 224), "bicubic")
        assert (out.cpu().int() - on_cpu.int()).abs().max() <= 1


@pytest.mark.skipif(not CUDA, reason="nvjpeg needs CUDA")
def test_nvjpeg_decodes_a_batch_on_the_gpu_as_libjpeg_does_on_the_cpu(tmp_path):
    from torchvision.io import ImageReadMode, decode_jpeg, read_file

    from mim_zoo.synthetic.photos import write_photo_folder

    data = [read_file(str(path)) for path in write_photo_folder(tmp_path, 4, seed=0, max_side=320)]
    on_gpu = decode_jpeg(data, mode=ImageReadMode.RGB, device="cuda")
    for encoded, decoded in zip(data, on_gpu, strict=True):
        reference = decode_jpeg(encoded, mode=ImageReadMode.RGB)
        assert decoded.device.type == "cuda" and decoded.shape == reference.shape
        assert (decoded.cpu().float() - reference.float()).abs().mean() < 1.0  # nvjpeg's IDCT: a grey level at most
