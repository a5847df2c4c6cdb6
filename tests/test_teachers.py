"""Teacher files in their original layouts (mim_zoo/synthetic/teachers.py) and their loading by TeacherTarget
(targets.py).

The files are tiny random ViTs written exactly as the real ones are stored: OpenAI CLIP's ``ViT-B-16.pt`` (``visual.*``
keys, fp16, TorchScript archive or torch.save) and DINO's ``dino_vitbase16_pretrain.pth`` (plain timm-named state
dict). Loading them must give back, bit for bit, the timm model they were written from.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from timm.models.vision_transformer import checkpoint_filter_fn

import mim_zoo  # noqa: F401  (registers the plugins)
from mim_zoo.core.targets import TeacherTarget
from mim_zoo.engine.config import prepare_config
from mim_zoo.synthetic.teachers import build_tiny_teacher, generate_teachers, timm_to_openai_clip, write_teacher

KW = dict(img_size=32, patch_size=4, embed_dim=48, depth=2, num_heads=3)
CLIP_ARCH, DINO_ARCH = "vit_base_patch16_clip_quickgelu_224", "vit_base_patch16_224"
CLIP_MEAN, CLIP_STD = [122.7709383, 116.7460125, 104.09373615], [68.5005327, 66.6321579, 70.32316305]
IN_MEAN, IN_STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")


def last_block_features(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``[B, L, D]``: patch tokens after the last block and the final norm, straight from timm."""
    depth = len(model.blocks)
    return model.forward_intermediates(images, indices=[depth - 1], norm=True, intermediates_only=True,
                                       output_fmt="NLC")[0]


def read_file_state(path, file_format: str) -> dict[str, torch.Tensor]:
    if file_format == "torchscript":
        return torch.jit.load(str(path), map_location="cpu").state_dict()
    return torch.load(path, map_location="cpu", weights_only=True)


def test_openai_layout_is_the_inverse_of_timms_conversion() -> None:
    model = build_tiny_teacher("openai_clip", seed=0, **KW)
    state = model.state_dict()
    openai = timm_to_openai_clip(state)
    assert openai["visual.class_embedding"].shape == (48,)
    assert openai["visual.positional_embedding"].shape == (65, 48)
    assert openai["visual.proj"].shape == (48, 24)  # [D, E]: OpenAI multiplies x @ proj
    assert "visual.transformer.resblocks.1.attn.in_proj_weight" in openai and "visual.ln_post.weight" in openai
    back = checkpoint_filter_fn(openai, model)  # timm's own _convert_openai_clip
    assert sorted(back) == sorted(state)
    for key, value in state.items():
        assert torch.equal(back[key], value), key


@pytest.mark.parametrize("file_format", ["torchscript", "torch"])
def test_openai_clip_file_loads_as_the_timm_model_it_came_from(tmp_path, file_format: str) -> None:
    path = write_teacher(tmp_path / "ViT-B-16.pt", "openai_clip", file_format, seed=3, **KW)
    state = read_file_state(path, file_format)
    # the file is in OpenAI's layout: both towers, fp16 weights, no timm names
    assert {"visual.class_embedding", "visual.conv1.weight", "visual.proj", "token_embedding.weight",
            "positional_embedding", "text_projection", "logit_scale", "input_resolution"} <= set(state)
    assert not any(k.startswith(("blocks.", "patch_embed.", "visual.blocks.")) for k in state)
    assert state["visual.transformer.resblocks.0.attn.in_proj_weight"].dtype == torch.float16
    reference = build_tiny_teacher("openai_clip", seed=3, **KW)
    teacher = TeacherTarget(CLIP_ARCH, str(path), norm="none", model_kwargs=KW)
    expected = {k: v for k, v in reference.state_dict().items() if not k.startswith("head.")}
    assert sorted(teacher.teacher.state_dict()) == sorted(expected)
    for key, value in teacher.teacher.state_dict().items():
        assert torch.equal(value, expected[key]), key
    images = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(teacher(images), last_block_features(reference, images), rtol=0, atol=0)


def test_dino_file_loads_as_the_timm_model_it_came_from(tmp_path) -> None:
    path = write_teacher(tmp_path / "dino_vitbase16_pretrain.pth", "dino", seed=4, **KW)
    state = torch.load(path, map_location="cpu", weights_only=True)  # a plain state dict, like the real file
    reference = build_tiny_teacher("dino", seed=4, **KW)
    assert sorted(state) == sorted(reference.state_dict())
    assert "cls_token" in state and "blocks.1.attn.qkv.weight" in state and not any("head" in k for k in state)
    assert state["blocks.0.mlp.fc1.weight"].dtype == torch.float32
    teacher = TeacherTarget(DINO_ARCH, str(path), norm="none", model_kwargs=KW)
    images = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(teacher(images), last_block_features(reference, images), rtol=0, atol=0)
    # norm="ln": parameter-free LayerNorm on top, and the same on predictions
    teacher_ln = TeacherTarget(DINO_ARCH, str(path), norm="ln", model_kwargs=KW)
    expected = F.layer_norm(last_block_features(reference, images), (48,), eps=1e-6)
    torch.testing.assert_close(teacher_ln(images), expected)
    torch.testing.assert_close(teacher_ln.normalize_prediction(expected * 3 + 1), expected, atol=1e-5, rtol=1e-5)


def test_teacher_sees_its_own_input_normalisation(tmp_path) -> None:
    path = write_teacher(tmp_path / "ViT-B-16.pt", "openai_clip", "torch", seed=5, **KW)
    teacher = TeacherTarget(CLIP_ARCH, str(path), norm="none", model_kwargs=KW, mean=CLIP_MEAN, std=CLIP_STD,
                            input_mean=IN_MEAN, input_std=IN_STD)
    images = torch.randn(2, 3, 32, 32)  # normalised with ImageNet statistics by the data preprocessor
    pixels = images * torch.tensor(IN_STD).view(1, 3, 1, 1) + torch.tensor(IN_MEAN).view(1, 3, 1, 1)
    clip_input = (pixels - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    reference = build_tiny_teacher("openai_clip", seed=5, **KW)
    torch.testing.assert_close(teacher(images), last_block_features(reference, clip_input), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(teacher(images), last_block_features(reference, images), atol=1e-3)
    with pytest.raises(ValueError, match="input_mean and input_std are all given"):
        TeacherTarget(CLIP_ARCH, str(path), model_kwargs=KW, mean=CLIP_MEAN, std=CLIP_STD)


def test_clip_projection_is_optional(tmp_path) -> None:
    path = write_teacher(tmp_path / "ViT-B-16.pt", "openai_clip", "torchscript", seed=6, **KW)
    teacher = TeacherTarget(CLIP_ARCH, str(path), norm="none", project=True, model_kwargs=dict(KW, num_classes=24))
    reference = build_tiny_teacher("openai_clip", seed=6, **KW)
    images = torch.randn(2, 3, 32, 32)
    assert teacher.dim == 24
    torch.testing.assert_close(teacher(images), reference.head(last_block_features(reference, images)))
    dino = write_teacher(tmp_path / "dino.pth", "dino", seed=6, **KW)
    with pytest.raises(ValueError, match=r"missing \['head.bias', 'head.weight'\]"):
        TeacherTarget(DINO_ARCH, str(dino), project=True, model_kwargs=dict(KW, num_classes=24))


@pytest.mark.parametrize("file_format", ["torchscript", "torch"])
def test_wrong_architecture_files_fail_clearly(tmp_path, file_format: str) -> None:
    clip = write_teacher(tmp_path / "ViT-B-16.pt", "openai_clip", file_format, seed=0, **KW)
    dino = write_teacher(tmp_path / "dino_vitbase16_pretrain.pth", "dino", seed=0, **KW)
    with pytest.raises(ValueError, match=r"does not match timm 'vit_base_patch16_224'.*unexpected \['norm_pre"):
        TeacherTarget(DINO_ARCH, str(clip), model_kwargs=KW)  # CLIP file given as DINO
    with pytest.raises(ValueError, match=r"ViT-B-16.pt.*missing \[\].*unexpected \['blocks.1"):
        TeacherTarget(CLIP_ARCH, str(clip), model_kwargs=dict(KW, depth=1))  # another depth
    with pytest.raises(ValueError, match=r"does not match timm 'vit_base_patch16_clip_quickgelu_224'.*Expected: X"):
        TeacherTarget(CLIP_ARCH, str(dino), model_kwargs=KW, source="X")  # DINO file given as CLIP
    with pytest.raises(ValueError, match="shape mismatch"):
        TeacherTarget(DINO_ARCH, str(dino), model_kwargs=dict(KW, embed_dim=64, num_heads=4))
    # another patch size: timm would resample the patch embedding silently; we refuse
    with pytest.raises(ValueError, match="has 4x4 patches but timm .* has 8x8"):
        TeacherTarget(DINO_ARCH, str(dino), model_kwargs=dict(KW, patch_size=8))
    with pytest.raises(ValueError, match="has 4x4 patches"):
        TeacherTarget(CLIP_ARCH, str(clip), model_kwargs=dict(KW, patch_size=8))


def test_missing_file_names_the_expected_file(tmp_path) -> None:
    missing = tmp_path / "teachers" / "ViT-B-16.pt"
    with pytest.raises(FileNotFoundError, match=r"ViT-B-16.pt' does not exist.*Expected: OpenAI CLIP ViT-B/16"):
        TeacherTarget(CLIP_ARCH, str(missing), model_kwargs=KW, source="OpenAI CLIP ViT-B/16 ViT-B-16.pt")


def test_generate_teachers_writes_once_and_never_overwrites_foreign_files(tmp_path) -> None:
    spec = dict(path=str(tmp_path / "clip.pt"), layout="openai_clip", file_format="torchscript", seed=1, **KW)
    (path,) = generate_teachers([spec])
    stamp = tmp_path / "clip.pt.json"
    assert json.loads(stamp.read_text())["seed"] == 1
    first = path.read_bytes()
    path.touch()
    mtime = path.stat().st_mtime_ns
    generate_teachers([spec])  # same spec: kept
    assert path.stat().st_mtime_ns == mtime
    generate_teachers([dict(spec, seed=2)])  # another spec: rewritten
    assert path.read_bytes() != first and json.loads(stamp.read_text())["seed"] == 2
    foreign = tmp_path / "real_ViT-B-16.pt"
    foreign.write_bytes(b"a real teacher")
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        generate_teachers([dict(spec, path=str(foreign))])
    assert foreign.read_bytes() == b"a real teacher"
    with pytest.raises(ValueError, match="unknown teacher layout"):
        write_teacher(tmp_path / "x.pt", "eva", **KW)
    with pytest.raises(ValueError, match="written as one of"):
        write_teacher(tmp_path / "x.pt", "dino", "torchscript", **KW)


def test_prepare_config_writes_the_requested_synthetic_data(tmp_path) -> None:
    specs = [dict(path=str(tmp_path / "c.pt"), layout="openai_clip", seed=0, **KW),
             dict(path=str(tmp_path / "d.pth"), layout="dino", seed=0, **KW)]
    prepare_config(Config(dict(synthetic_data=[dict(type=generate_teachers, specs=specs)])))
    TeacherTarget(CLIP_ARCH, str(tmp_path / "c.pt"), model_kwargs=KW)
    TeacherTarget(DINO_ARCH, str(tmp_path / "d.pth"), model_kwargs=KW)
