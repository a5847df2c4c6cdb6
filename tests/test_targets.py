"""The target contract for every registered target generator, and each target's mathematics."""

import pytest
import timm
import torch

from mim_zoo.core.targets import MomentumTarget, PixelTarget, TeacherTarget, layer_norm
from mim_zoo.registry import MODELS, TARGET_GENERATORS, registered_names

TEACHER_ARCH = dict(model_name="vit_tiny_patch16_224", img_size=32, patch_size=4, embed_dim=48, depth=2, num_heads=3)


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory):
    """A tiny timm ViT saved as a plain state dict (a DINO-style file: timm names)."""
    torch.manual_seed(0)
    model = timm.create_model(pretrained=False, num_classes=0, **TEACHER_ARCH)
    path = tmp_path_factory.mktemp("teacher") / "tiny_vit.pth"
    torch.save(model.state_dict(), path)
    return path, model.eval()


def example(name: str, teacher_path) -> dict:
    examples = {
        "PixelTarget": dict(norm="patch"),
        "MomentumTarget": dict(),
        "TeacherTarget": dict(arch="vit_tiny_patch16_224", checkpoint=str(teacher_path),
                              model_kwargs={k: v for k, v in TEACHER_ARCH.items() if k != "model_name"}),
    }
    return dict(type=name, **examples[name])


def test_every_target_has_an_example(teacher_file):
    for name in registered_names(TARGET_GENERATORS):
        example(name, teacher_file[0])  # KeyError: add an example for the new target


@pytest.mark.parametrize("name", registered_names(TARGET_GENERATORS))
def test_contract(name, teacher_file, tiny_vit_cfg, images):
    encoder = MODELS.build(tiny_vit_cfg)
    target = TARGET_GENERATORS.build(example(name, teacher_file[0]))
    target.bind(encoder)
    out = target(images, encoder)
    assert out.shape == (4, 64, target.dim) and torch.isfinite(out).all()
    assert not out.requires_grad  # no-grad module
    assert torch.equal(out, target(images, encoder))  # deterministic
    assert all(not p.requires_grad for p in target.parameters())  # nothing in a target trains
    assert target.normalize_prediction(out).shape == out.shape


def test_pixel_targets_hand_computed():
    img = torch.arange(2 * 2 * 3, dtype=torch.float32).reshape(2, 2, 3).permute(2, 0, 1)[None]  # [1, 3, 2, 2]
    raw = PixelTarget("none", patch_size=2).compute(img, None)  # one patch, (p, q, c) order == HWC flatten
    assert torch.equal(raw[0, 0], torch.arange(12, dtype=torch.float32))
    mae = PixelTarget("patch", patch_size=2).compute(img, None)
    values = torch.arange(12, dtype=torch.float32)
    assert torch.allclose(mae[0, 0], (values - values.mean()) / (values.var(unbiased=True) + 1e-6) ** 0.5)
    boot = PixelTarget("patch_channel", patch_size=2).compute(img, None)
    channel = torch.tensor([0.0, 3, 6, 9])  # channel 0 of the four pixels; channels 1, 2 are shifted by 1, 2
    normed = (channel - channel.mean()) / (channel.var(unbiased=False) + 1e-5) ** 0.5
    assert torch.allclose(boot[0, 0].view(4, 3), normed[:, None].expand(4, 3), atol=1e-6)


@pytest.mark.parametrize("norm", ["none", "patch", "patch_channel"])
def test_to_pixels_inverts_the_normalisation(norm, images, tiny_vit_cfg):
    target = PixelTarget(norm)
    target.bind(MODELS.build(tiny_vit_cfg))
    assert target.patch_size == 4 and target.dim == 48
    back = target.to_pixels(target(images), images)
    assert torch.allclose(back, PixelTarget("none", patch_size=4).compute(images, None), atol=1e-4)


def test_momentum_target_is_an_ema_of_the_encoder(tiny_vit_cfg, images):
    encoder = MODELS.build(tiny_vit_cfg)
    target = MomentumTarget()
    target.bind(encoder)
    assert torch.allclose(target(images), layer_norm(encoder.forward_full(images)), atol=1e-6)
    before = {k: v.clone() for k, v in target.ema.named_parameters()}
    with torch.no_grad():
        for p in encoder.parameters():
            p.add_(1.0)
    target.update(encoder, momentum=0.9)
    for name, p in target.ema.named_parameters():
        online = dict(encoder.named_parameters())[name]
        assert torch.allclose(p, 0.9 * before[name] + 0.1 * online, atol=1e-6), name
    target.train()
    assert not target.ema.training  # the momentum encoder always runs in eval mode
    with pytest.raises(ValueError, match="momentum"):
        target.update(encoder, 1.5)


def test_momentum_update_equals_a_per_tensor_lerp(tiny_vit_cfg):
    """The foreach EMA step is the per-tensor ``ema.lerp_(param, 1 - m)`` it replaced, bit for bit."""
    encoder = MODELS.build(tiny_vit_cfg)
    target = MomentumTarget()
    target.bind(encoder)
    with torch.no_grad():
        for p in encoder.parameters():
            p.mul_(1.5).add_(0.25)
    expected = {name: e.clone().lerp_(dict(encoder.named_parameters())[name], 1.0 - 0.996)
                for name, e in target.ema.named_parameters()}
    target.update(encoder, momentum=0.996)
    assert all(torch.equal(p, expected[name]) for name, p in target.ema.named_parameters())


def test_teacher_target_features_equal_the_source_model(teacher_file, images, tiny_vit_cfg):
    path, source = teacher_file
    target = TARGET_GENERATORS.build(example("TeacherTarget", path))
    target.bind(MODELS.build(tiny_vit_cfg))
    expected = source.forward_features(images)[:, 1:]  # final norm applied, class token dropped
    assert torch.allclose(target(images), layer_norm(expected), atol=1e-5)


def test_teacher_errors_name_the_file_and_the_fix(teacher_file, tmp_path, tiny_vit_cfg):
    kwargs = {k: v for k, v in TEACHER_ARCH.items() if k != "model_name"}
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        TeacherTarget("vit_tiny_patch16_224", str(tmp_path / "missing.pth"), model_kwargs=kwargs)
    with pytest.raises(ValueError, match="does not match timm 'vit_tiny_patch16_224'"):
        TeacherTarget("vit_tiny_patch16_224", str(teacher_file[0]), model_kwargs=dict(kwargs, depth=3))
    teacher = TeacherTarget("vit_tiny_patch16_224", str(teacher_file[0]), model_kwargs=kwargs)
    with pytest.raises(ValueError, match="token grid"):
        teacher.bind(MODELS.build(dict(tiny_vit_cfg, patch_size=8)))


def test_teacher_weights_stay_out_of_checkpoints(teacher_file, tiny_vit_cfg):
    """Frozen teacher weights come from their file: not saved, yet strict loading of a saved state works."""
    path, _ = teacher_file
    target = TARGET_GENERATORS.build(example("TeacherTarget", path))
    assert not any(k.startswith("teacher.") for k in target.state_dict())
    other = TARGET_GENERATORS.build(example("TeacherTarget", path))
    other.load_state_dict(target.state_dict(), strict=True)
    for a, b in zip(target.teacher.parameters(), other.teacher.parameters(), strict=True):
        assert torch.equal(a, b)
