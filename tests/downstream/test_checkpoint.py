"""mim_zoo.core.checkpoints.read: the encoder of a pretraining checkpoint, rebuilt from its saved config alone."""

from __future__ import annotations

import copy

import pytest
import torch

import mim_zoo  # noqa: F401
from mim_zoo.core.checkpoints.read import (
    CheckpointError,
    load_pretrained_encoder,
    parse_config_text,
    read_checkpoint,
    resolve_type,
    saved_model_config,
)
from mim_zoo.core.encoders import ViTEncoder


def test_parse_config_text_reads_mmengine_pretty_text():
    text = ("lr = 1.5e-06\nbetas = (0.9, 0.95,)\nneg = -3\nflag = True\nnothing = None\n"
            "model = dict(encoder=dict(type='mim_zoo.core.encoders.ViTEncoder', depth=2, sizes=[1, 2]), "
            "decoder={'a': 1})")
    cfg = parse_config_text(text)
    assert cfg == dict(lr=1.5e-6, betas=(0.9, 0.95), neg=-3, flag=True, nothing=None,
                       model=dict(encoder=dict(type="mim_zoo.core.encoders.ViTEncoder", depth=2, sizes=[1, 2]),
                                  decoder={"a": 1}))


def test_parse_config_text_never_executes_code(tmp_path):
    marker = tmp_path / "pwned"
    text = f"import os\nx = os.system('touch {marker}')\nmodel = __import__('os').getcwd()\ny = dict(**{{}})\nz = 1"
    cfg = parse_config_text(text)
    assert cfg == {"z": 1}  # everything that is not a literal is skipped, nothing is run
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="model.encoder"):
        saved_model_config({"meta": {"cfg": text}})


def test_saved_config_of_a_real_checkpoint(tiny_checkpoint):
    model = saved_model_config(read_checkpoint(tiny_checkpoint))
    assert model["type"] == "mim_zoo.core.algorithms.MAE"
    assert model["encoder"] == dict(type="mim_zoo.core.encoders.ViTEncoder", arch="vit_tiny_patch16_224", img_size=32,
                                    pos_embed="sincos", init="mae", patch_size=4, embed_dim=64, depth=2, num_heads=4)


def test_encoder_weights_equal_the_checkpoint(tiny_checkpoint, tiny_pretrained):
    state = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    assert tiny_pretrained.canonical == "timm" and tiny_pretrained.method == "MAE"
    assert (tiny_pretrained.epoch, tiny_pretrained.iteration) == (2, 10)  # 2 epochs of 80 images in batches of 16
    assert isinstance(tiny_pretrained.encoder, ViTEncoder)
    # exactly the encoder.vit.* tensors; decoder and target are left out
    assert set(tiny_pretrained.state_dict) == {k[len("encoder.vit."):] for k in state if k.startswith("encoder.")}
    for key, value in tiny_pretrained.state_dict.items():
        assert torch.equal(value, state["encoder.vit." + key]), key
    assert any(k.startswith("decoder.") for k in state)


def _save_variant(path, ckpt, **edits):
    ckpt = copy.deepcopy(ckpt)
    for fn in edits.values():
        fn(ckpt)
    torch.save(ckpt, path)
    return str(path)


def test_encoder_that_does_not_fit_its_config_is_an_error(tiny_checkpoint, tmp_path):
    ckpt = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)
    shallower = _save_variant(tmp_path / "depth1.pth", ckpt,
                              cfg=lambda c: c["meta"].update(cfg=c["meta"]["cfg"].replace("depth=2", "depth=1")))
    with pytest.raises(CheckpointError, match=r"not in the model: vit\.blocks\.1\."):
        load_pretrained_encoder(shallower)
    wider = _save_variant(tmp_path / "wide.pth", ckpt,
                          cfg=lambda c: c["meta"].update(cfg=c["meta"]["cfg"].replace("embed_dim=64", "embed_dim=96")))
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_pretrained_encoder(wider)


def test_unusable_files_are_errors_that_say_why(tiny_checkpoint, tmp_path):
    ckpt = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)
    no_encoder = _save_variant(tmp_path / "noenc.pth", ckpt, sd=lambda c: c.update(
        state_dict={k: v for k, v in c["state_dict"].items() if not k.startswith("encoder.")}))
    with pytest.raises(CheckpointError, match=r"no 'encoder\.\*' weights.*decoder"):
        load_pretrained_encoder(no_encoder)
    no_cfg = _save_variant(tmp_path / "nocfg.pth", ckpt, meta=lambda c: c["meta"].pop("cfg"))
    with pytest.raises(CheckpointError, match="no saved config"):
        load_pretrained_encoder(no_cfg)
    torch.save({"model": {}}, tmp_path / "plain.pth")
    with pytest.raises(CheckpointError, match="not an mmengine checkpoint"):
        load_pretrained_encoder(tmp_path / "plain.pth")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_pretrained_encoder(tmp_path / "missing.pth")


def test_only_registered_encoder_types_are_built():
    assert resolve_type("mim_zoo.core.encoders.ViTEncoder") is ViTEncoder
    assert resolve_type("ViTEncoder") is ViTEncoder
    with pytest.raises(CheckpointError, match="not a registered"):
        resolve_type("os.system")
    with pytest.raises(CheckpointError, match="does not match"):
        resolve_type("somewhere.else.ViTEncoder")
