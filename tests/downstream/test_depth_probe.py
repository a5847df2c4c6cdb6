"""The linear probe of every depth (mim_zoo.engine.depth_probe): one row per block (ViT, two poolings) or stage (MixMIM
Swin), the final norm's row equal to the plain linear probe of the pooled features, the pretraining normalisation."""

from __future__ import annotations

import json

import pytest
import torch
from mmengine.config import Config

from mim_zoo.core.checkpoints.read import load_pretrained_encoder
from mim_zoo.engine.depth_probe import pretraining_preprocessor, run_depth_probe
from mim_zoo.engine.labelled import labelled_batches, labelled_loader
from mim_zoo.engine.probes import extract_features, linear_probe

from ..conftest import CATALOGUE

TWIN = CATALOGUE.path(CATALOGUE.recipe("depth_probe", "MAE", "timm", tiny=True).config)
SMALL = {"probe.train.per_class": 20, "probe.val.per_class": 20}  # 200 / 200 images: the probes in seconds


@pytest.fixture(scope="module")
def vit_probe(tiny_checkpoint, tmp_path_factory) -> tuple[dict, object]:
    work_dir = tmp_path_factory.mktemp("depth_probe")
    return run_depth_probe(TWIN, tiny_checkpoint, str(work_dir), SMALL), work_dir


def test_one_row_per_block_and_pooling_and_the_final_norm(vit_probe, tiny_pretrained):
    record, work_dir = vit_probe
    depth = tiny_pretrained.encoder.depth  # 2 blocks
    layers = [(r["depth"], r["layer"], r["pooling"]) for r in record["layers"]]
    expected = [(d, f"block {d}", p) for d in range(1, depth + 1) for p in ("class token", "mean of patch tokens")]
    assert layers == expected + [(depth + 1, "final norm", p) for p in ("class token", "mean of patch tokens")]
    assert all(0.0 <= r["top1"] <= 100.0 for r in record["layers"])
    assert record["metrics"]["depth_probe/best_top1"] == max(r["top1"] for r in record["layers"])
    assert record["images"] == {"train": 200, "val": 200}  # 20 per class of each split
    table = (work_dir / "depth_probe.md").read_text().strip().splitlines()
    assert len(table) == 2 + len(layers) and table[0].startswith("| method | depth | layer | pooling | top-1 %")
    assert json.loads((work_dir / "depth_probe.json").read_text())["layers"] == record["layers"]
    assert (work_dir / "depth_probe.png").read_bytes()[:4] == b"\x89PNG"


def test_the_final_norm_row_is_the_plain_probe_of_the_pooled_features(vit_probe, tiny_checkpoint):
    record, _ = vit_probe
    cfg = Config.fromfile(str(TWIN))
    cfg.merge_from_dict(SMALL)
    probe = cfg.probe
    encoder = load_pretrained_encoder(tiny_checkpoint).encoder
    preprocessor = pretraining_preprocessor(tiny_checkpoint)
    splits = {}
    for name in ("train", "val"):
        labels: list = []
        images = torch.cat(list(labelled_batches(labelled_loader(probe[name], scope="mmpretrain"), preprocessor,
                                                 labels)))
        splits[name] = (extract_features(encoder, images, dtype=torch.bfloat16), torch.cat(labels))
    expected = 100 * linear_probe(*splits["train"], *splits["val"])["top1"]
    final = next(r for r in record["layers"] if r["layer"] == "final norm" and r["pooling"] == "mean of patch tokens")
    assert final["top1"] == pytest.approx(expected, abs=0.51)  # one of 200 images (bf16 features on both sides)


def test_a_mixmim_swin_is_probed_per_stage(pretraining_checkpoint, tmp_path):
    checkpoint = pretraining_checkpoint("MixMAE")
    twin = CATALOGUE.path(CATALOGUE.recipe("depth_probe", "MixMAE", "mmpretrain", tiny=True).config)
    record = run_depth_probe(twin, checkpoint, str(tmp_path), SMALL)
    stages = len(load_pretrained_encoder(checkpoint).encoder.stage_grids)
    assert [r["layer"] for r in record["layers"]] == [f"stage {i}" for i in range(1, stages + 1)] + ["final norm"]
    assert {r["pooling"] for r in record["layers"]} == {"mean of patch tokens"}


def test_inputs_are_normalised_as_the_pretraining_config_did(pretraining_checkpoint, tiny_checkpoint):
    bootmae = pretraining_preprocessor(pretraining_checkpoint("BootMAE"))  # BootMAE: mean = std = 127.5
    mae = pretraining_preprocessor(tiny_checkpoint)
    assert bootmae.mean.flatten().tolist() == bootmae.std.flatten().tolist() == [127.5] * 3
    assert mae.mean.flatten().tolist() == pytest.approx([123.675, 116.28, 103.53])
