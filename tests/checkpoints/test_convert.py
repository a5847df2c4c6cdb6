"""tools/convert_checkpoint.py and mim_zoo.core.checkpoints (sources, convert, check): every layout listed with the
file it expects; official files become checkpoints that continue training (BootMAE's EMA included), export and
benchmark like those of tools/train.py; --check reports parameter counts and missing keys."""

from __future__ import annotations

import argparse
import json
import random

import pytest
import torch

import mim_zoo  # noqa: F401  (registers the plugins)
from mim_zoo.core.checkpoints import SOURCES, convert_state_dict
from mim_zoo.core.checkpoints.bootmae import bootmae_to_mim_zoo
from mim_zoo.core.checkpoints.check import check_checkpoint, parameter_counts
from mim_zoo.core.checkpoints.read import build_saved_algorithm, load_pretrained_encoder, saved_model_config
from mim_zoo.core.targets import TeacherTarget
from mim_zoo.engine.benchmark import results_row

from ..downstream.conftest import load_tool
from ..helpers.official import bootmae_state_dict, mae_state_dict

MAE_TINY, BOOTMAE_TINY = "configs/mae/tiny_cpu.py", "configs/bootmae/tiny_cpu.py"


def tiny_mae(**kwargs) -> dict[str, torch.Tensor]:
    """configs/mae/tiny_cpu.py in the official layout: 64-d, 2 blocks, 4-px patches, 8x8 grid, 32-d 1-block decoder."""
    return mae_state_dict(64, 2, 32, 1, patch=4, grid=8, **kwargs)


def tiny_bootmae(seed: int) -> dict[str, torch.Tensor]:
    """configs/bootmae/tiny_cpu.py: the encoder above, 32-d 2-block pixel decoder (3 heads), 2-block feature decoder."""
    return bootmae_state_dict(64, 2, 4, 32, 2, 3, 2, 4, patch=4, grid=8, seed=seed)


def official_file(path, model: dict, **entries) -> str:
    """A file as the official training scripts save it (``model``, ``epoch``, ``args``: an ``argparse.Namespace``,
    which is why conversion reads with ``weights_only=False``)."""
    torch.save(dict(model=model, epoch=9, args=argparse.Namespace(model="tiny", input_size=32), **entries), path)
    return str(path)


def convert(*argv: str) -> None:
    load_tool("convert_checkpoint").main(list(argv))


def test_list_shows_every_source_layout_with_the_file_it_expects(capsys):
    convert("--list")
    out = capsys.readouterr().out
    assert {"mae", "mae_encoder", "mae_visualize", "bootmae", "mixmim", "mixmim_mmpretrain", "mim_zoo", "openai_clip",
            "dino"} <= set(SOURCES)
    for layout in SOURCES.values():
        assert f"  {layout.name} " in out and f"files: {layout.files}" in out
    assert "mae_pretrain_vit_base.pth" in SOURCES["mae_encoder"].files and "model_ema" in SOURCES["bootmae"].files
    assert "ViT-B-16.pt" in SOURCES["openai_clip"].files and "dino_vitbase16_pretrain.pth" in SOURCES["dino"].files
    for target in ("timm", "mmpretrain", "mmseg", "mmdet"):
        assert f"  {target} " in out


def test_bootmae_conversion_continues_the_official_ema(tmp_path):
    """The EMA of the file (``model_ema``) becomes the momentum encoder; before, the tool passed only ``model`` and
    the momentum encoder restarted from the online weights."""
    online, ema = tiny_bootmae(seed=0), tiny_bootmae(seed=5)
    src = official_file(tmp_path / "checkpoint-9.pth", online, model_ema=ema)
    convert(src, str(tmp_path / "ours.pth"), "--from", "bootmae", "--config", BOOTMAE_TINY)
    converted = torch.load(tmp_path / "ours.pth", map_location="cpu", weights_only=True)["state_dict"]
    expected = bootmae_to_mim_zoo(online, ema_state_dict=ema)
    momentum = {k: v for k, v in converted.items() if k.startswith("feature_target.ema.")}
    assert momentum and all(torch.equal(v, expected[k]) for k, v in momentum.items())
    q_bias = ema["blocks.1.attn.q_bias"]  # from the EMA's own weights, not the online encoder's
    assert torch.equal(converted["feature_target.ema.vit.blocks.1.attn.qkv.bias"][: len(q_bias)], q_bias)
    assert not torch.equal(converted["feature_target.ema.vit.cls_token"], converted["encoder.vit.cls_token"])
    assert torch.equal(converted["encoder.vit.cls_token"], online["cls_token"])


def test_converted_official_checkpoint_exports_and_benchmarks(tmp_path, capsys):
    """The converted file records its config, so the tools that rebuild the encoder read it directly (before, both
    refused it: "has no saved config")."""
    src = official_file(tmp_path / "mae_official.pth", tiny_mae())
    dst = str(tmp_path / "mae.pth")
    convert(src, dst, "--from", "mae", "--config", MAE_TINY)
    out = capsys.readouterr().out
    assert f"architecture): python tools/train.py {MAE_TINY} --cfg-options load_from={dst}" in out
    pretrained = load_pretrained_encoder(dst)
    assert (pretrained.method, pretrained.epoch) == ("MAE", 10)  # the official file had finished epoch index 9
    load_tool("export").main([dst, "--to", "timm", "--out", str(tmp_path / "timm.pth")])
    exported = torch.load(tmp_path / "timm.pth", map_location="cpu", weights_only=True)
    assert torch.equal(exported["blocks.1.mlp.fc2.weight"], tiny_mae()["blocks.1.mlp.fc2.weight"])
    load_tool("benchmark").main([dst, "--tiny", "--tasks", "linear,coco", "--gpus", "2", "--dry-run",
                                 "--work-dir", str(tmp_path / "bench")])
    commands = [line for line in capsys.readouterr().out.splitlines() if "torch.distributed.run" in line]
    assert len(commands) == 2 and all(dst in c for c in commands)


@pytest.mark.slow
def test_a_converted_official_checkpoint_trains_a_downstream_task(tmp_path):
    """The tiny linear probe (mmpretrain, toy data) from a converted file: its backbone loads it through
    ``mim_checkpoint`` with the key checks, and the row names the method and the official epochs."""
    src = official_file(tmp_path / "mae_official.pth", tiny_mae())
    dst = str(tmp_path / "mae.pth")
    convert(src, dst, "--from", "mae", "--config", MAE_TINY)
    load_tool("benchmark").main([dst, "--tiny", "--tasks", "linear", "--work-dir", str(tmp_path / "bench")])
    results = json.loads((tmp_path / "bench" / "results.json").read_text())
    assert (results["method"], results["epochs"]) == ("MAE", 10)
    assert 0.0 <= results_row(results)["linear_top1"] <= 100.0


def test_a_layouts_config_options_are_recorded_and_printed(tmp_path, capsys):
    """The demo models predict raw pixels: their converted file records (and the tool prints) that option."""
    src = official_file(tmp_path / "mae_visualize_vit_tiny.pth", tiny_mae())
    dst = str(tmp_path / "visualize.pth")
    convert(src, dst, "--from", "mae_visualize", "--config", MAE_TINY)
    assert f"load_from={dst} model.target.norm=none" in capsys.readouterr().out
    model = build_saved_algorithm(saved_model_config(torch.load(dst, map_location="cpu", weights_only=True)))
    assert model.target.norm == "none"


def test_check_reports_parameter_counts_and_missing_keys(tmp_path, capsys):
    src = official_file(tmp_path / "mae_pretrain_vit_tiny.pth", tiny_mae(decoder=False))  # an encoder-only release
    dst = str(tmp_path / "encoder.pth")
    convert(src, dst, "--from", "mae_encoder", "--config", MAE_TINY, "--check")
    out = capsys.readouterr().out
    saved = torch.load(dst, map_location="cpu", weights_only=True)
    model = build_saved_algorithm(saved_model_config(saved))
    counts = parameter_counts(model)
    assert counts["total"] == sum(p.numel() for p in model.parameters()) == counts["encoder"] + counts["decoder"]
    assert f"MAE: {counts['total']:,} parameters (encoder {counts['encoder']:,}, decoder {counts['decoder']:,})" in out
    encoder_values = sum(v.numel() for v in saved["state_dict"].values())
    assert f"loaded from the file: {len(saved['state_dict'])} tensors, {encoder_values:,} values" in out
    decoder_keys = [k for k in model.state_dict() if k.startswith("decoder.")]
    assert f"not in files of this layout (initialised by a run): decoder.* ({len(decoder_keys)} tensors)" in out
    assert "missing in the file: none" in out
    del saved["state_dict"]["encoder.vit.blocks.1.mlp.fc2.bias"]  # a damaged file: one tensor short
    saved["state_dict"]["encoder.vit.extra"] = torch.zeros(1)
    torch.save(saved, tmp_path / "damaged.pth")
    report = check_checkpoint(tmp_path / "damaged.pth")
    assert not report.ok and report.missing == ["encoder.vit.blocks.1.mlp.fc2.bias"]
    assert report.unexpected == ["encoder.vit.extra"]
    with pytest.raises(SystemExit, match="does not fit its model"):
        convert("--check", str(tmp_path / "damaged.pth"))
    assert "missing in the file: encoder.vit.blocks.1.mlp.fc2.bias" in capsys.readouterr().out


def test_files_of_another_layout_or_architecture_are_one_line_errors(tmp_path):
    src = official_file(tmp_path / "mae.pth", tiny_mae())
    with pytest.raises(SystemExit, match=r"is not a bootmae checkpoint: pos_embed .* not BootMAE's fixed sin-cos"):
        convert(src, str(tmp_path / "x.pth"), "--from", "bootmae", "--config", BOOTMAE_TINY)
    with pytest.raises(SystemExit, match="holds the decoder too; convert it with --from mae"):
        convert(src, str(tmp_path / "x.pth"), "--from", "mae_encoder", "--config", MAE_TINY)
    with pytest.raises(SystemExit, match=r"(?s)fit none of the configs tried.*configs/bootmae/tiny_cpu.py"):
        convert(src, str(tmp_path / "x.pth"), "--from", "mae", "--config", BOOTMAE_TINY)  # another algorithm
    with pytest.raises(SystemExit, match="does not exist"):
        convert(str(tmp_path / "nope.pth"), str(tmp_path / "x.pth"), "--from", "mae")
    with pytest.raises(SystemExit, match="2"):  # argparse: SRC DST --from LAYOUT, or --check FILE
        convert(src, "--from", "mae")
    assert not (tmp_path / "x.pth").exists()


@pytest.mark.slow
def test_without_config_the_layouts_own_configs_are_tried_by_architecture(tmp_path, capsys):
    """A ViT-B/16 encoder-only release fits configs/mae/vitb_800e.py; a tiny one fits neither paper config."""
    src = official_file(tmp_path / "mae_pretrain_vit_base.pth", mae_state_dict(768, 12, 512, 8, 16, 14,
                                                                             decoder=False))
    convert(src, str(tmp_path / "vitb.pth"), "--from", "mae_encoder")
    assert "for configs/mae/vitb_800e.py" in capsys.readouterr().out
    assert load_pretrained_encoder(tmp_path / "vitb.pth").encoder_cfg["arch"] == "vit_base_patch16_224"
    tiny = official_file(tmp_path / "tiny.pth", tiny_mae(decoder=False))
    with pytest.raises(SystemExit, match=r"(?s)fit none.*--config.*vitb_800e.py:.*shape mismatch.*vitl_800e.py:"):
        convert(tiny, str(tmp_path / "x.pth"), "--from", "mae_encoder")


def test_mim_zoo_files_keep_their_config_and_drop_the_training_state(tmp_path):
    work_dir = tmp_path / "run"
    load_tool("train").main([MAE_TINY, "--work-dir", str(work_dir), "--cfg-options", "train_cfg.max_epochs=1",
                             "train_dataloader.dataset.indices=16"])
    convert(str(work_dir / "epoch_1.pth"), str(tmp_path / "shared.pth"), "--from", "mim_zoo", "--check")
    source = torch.load(work_dir / "epoch_1.pth", map_location="cpu", weights_only=True)
    shared = torch.load(tmp_path / "shared.pth", map_location="cpu", weights_only=True)
    assert set(shared) == {"state_dict", "meta"} and "optimizer" in source
    assert shared["meta"]["cfg"] == source["meta"]["cfg"] and shared["meta"]["mim_zoo"]["layout"] == "mim_zoo"
    assert all(torch.equal(v, source["state_dict"][k]) for k, v in shared["state_dict"].items())
    assert shared["state_dict"].keys() == source["state_dict"].keys()


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")
@pytest.mark.parametrize("layout, file_format", [("openai_clip", "torchscript"), ("dino", "torch")])
def test_teacher_files_convert_to_the_timm_state_dict_teachertarget_loads(layout, file_format, tmp_path, capsys):
    from mim_zoo.synthetic.teachers import build_tiny_teacher, write_teacher

    sizes = dict(img_size=32, patch_size=4, embed_dim=48, depth=2, num_heads=3)
    src = write_teacher(tmp_path / f"{layout}.pt", layout, file_format, seed=3, **sizes)
    dst = str(tmp_path / f"{layout}_timm.pth")
    convert(str(src), dst, "--from", layout, "--check")
    assert "missing in the file: none" in capsys.readouterr().out
    written = build_tiny_teacher(layout, seed=3, **sizes).state_dict()  # what the original file was made from
    converted = torch.load(dst, map_location="cpu", weights_only=True)
    assert converted["state_dict"].keys() == written.keys()
    assert all(torch.equal(converted["state_dict"][k], v) for k, v in written.items())
    arch = converted["meta"]["mim_zoo"]["arch"]
    images = torch.randn(2, 3, 32, 32)
    original, ours = (TeacherTarget(arch, checkpoint=str(path), model_kwargs=sizes) for path in (src, dst))
    torch.testing.assert_close(ours(images), original(images), rtol=0, atol=0)


# mmpretrain's MixMIMPretrainTransformer masks at a fixed stride of 32 over four stages (encoder_stride), so the
# tiny model for it has 4-px patches and four stages on 64-px images: grids 16/8/4/2, 2x2 output tokens.
MIXMIM_4STAGE = dict(arch=dict(embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2]), img_size=64,
                     patch_size=4, window_size=[4, 4, 4, 2])


def test_mmpretrain_mixmim_layout_computes_mmpretrains_loss(tmp_path):
    """mmpretrain 1.2.0's own MixMIM (backbone + neck + head), converted and rebuilt from the config the file
    records (with mmpretrain's decoder eps and sin-cos order): the same loss on the same images and mask."""
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS

    with DefaultScope.overwrite_default_scope("mmpretrain"):
        mm = MMPRETRAIN_MODELS.build(dict(
            type="MixMIM", backbone=dict(type="MixMIMPretrainTransformer", **MIXMIM_4STAGE),
            neck=dict(type="MixMIMPretrainDecoder", num_patches=4, encoder_stride=32, embed_dim=128,
                      decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=4),
            head=dict(type="MixMIMPretrainHead", norm_pix=True,
                      loss=dict(type="PixelReconstructionLoss", criterion="L2"))))
        mm.init_weights()
    mm.eval()
    config = tmp_path / "mixmae_4stage.py"  # the mim_zoo config of that model
    config.write_text(f"model = dict(type='MixMAE', encoder=dict(type='MixMIMEncoder', **{MIXMIM_4STAGE!r}), "
                      "decoder=dict(embed_dim=32, depth=1, num_heads=4))\n")
    torch.save({"state_dict": mm.state_dict(), "meta": {"epoch": 300}}, tmp_path / "mmpretrain_mixmim.pth")
    convert(str(tmp_path / "mmpretrain_mixmim.pth"), str(tmp_path / "ours.pth"), "--from", "mixmim_mmpretrain",
            "--config", str(config))
    saved = torch.load(tmp_path / "ours.pth", map_location="cpu", weights_only=True)
    ours = build_saved_algorithm(saved_model_config(saved))
    ours.load_state_dict(saved["state_dict"], strict=True)
    ours.eval()
    assert saved["meta"]["epoch"] == 300
    images = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    random.seed(0)
    torch.manual_seed(1)
    expected = mm.loss(images, [])["loss"]
    torch.manual_seed(1)  # mmpretrain's MixMIMPretrainTransformer.random_masking: one noise row, the lowest half mixed
    noise = torch.rand(1, 1, 4)
    mask = torch.zeros(4, dtype=torch.bool)
    mask[noise.argsort(dim=2)[0, 0, :2]] = True
    loss = ours(images, mode="loss", mask=mask.expand(4, -1))["loss_rec"]
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="not mmpretrain's fixed sin-cos table"):
        convert_state_dict("mixmim_mmpretrain", dict(mm.state_dict(), **{
            "neck.decoder_pos_embed": torch.zeros_like(mm.neck.decoder_pos_embed)}))
