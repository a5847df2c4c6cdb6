"""Bad input gets a clear error: each case runs the real entry point (mostly ``tools/train.py``) and asserts the
message names the problem and the fix."""

from __future__ import annotations

import os
import os.path as osp

import numpy as np
import pytest
import timm
import torch
from mmengine.config import Config
from mmpretrain.datasets import CustomDataset, PackInputs
from PIL import Image
from torch.utils.data import DataLoader

from mim_zoo.core.targets import TeacherTarget
from mim_zoo.engine.config_checks import check_config_types, check_image_folder, check_runner_types
from mim_zoo.engine.reliability import RunAborted
from mim_zoo.engine.transforms import CheckedLoadImage, CorruptImageError
from mim_zoo.registry import (
    MASK_GENERATORS,
    MODELS,
    TARGET_GENERATORS,
    InvalidValueError,
    UnknownPluginError,
    registered_names,
)

from .helpers.training import build_runner, single_thread, train_cli

CONFIG = "configs/mae/tiny_cpu.py"


def cli_error(tmp_path, *options: str, extra: tuple[str, ...] = ()) -> str:
    message = train_cli([CONFIG, "--work-dir", str(tmp_path / "work"), *extra, "--cfg-options", *options])
    assert message, "expected the command to fail"
    return message


# --- unknown plugins ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("option, registry", [
    ("model.type=MAe", MODELS),  # built by mmengine's Runner
    ("model.encoder.type=VitEncoder", MODELS),  # built by the algorithm
    ("model.masking.type=RandomMask", MASK_GENERATORS),
    ("model.target.type=PixelTargt", TARGET_GENERATORS),
])
def test_unknown_plugin_lists_every_registered_name(tmp_path, option: str, registry) -> None:
    name = option.split("=")[1]
    message = cli_error(tmp_path, option)
    assert f"{name!r} is not a registered {registry.name}" in message
    assert "Did you mean" in message
    for registered in registered_names(registry):  # new plugins are listed without touching this test
        assert registered in message


@pytest.mark.parametrize("option, expected", [
    ("optim_wrapper.optimizer.type=AdamWW", "optim_wrapper.optimizer.type: 'AdamWW' is not in the optimizers registry. "
                                            "Did you mean 'AdamW'"),
    ("optim_wrapper.type=AmpOptimWraper", "optim_wrapper.type: 'AmpOptimWraper' is not in the optim_wrappers registry. "
                                          "Did you mean 'AmpOptimWrapper'"),
    ("train_dataloader.dataset.pipeline.2.type=RandomFlipp",
     "train_dataloader.dataset.pipeline.2.type: 'RandomFlipp' is not in the transform registry. Did you mean "
     "'RandomFlip'"),
    ("train_dataloader.dataset.type=CustomDataset", "train_dataloader.dataset.type: 'CustomDataset' is not in the "
                                                    "datasets registry."),
])
def test_an_unknown_runner_type_is_named_before_the_runner_writes(tmp_path, option: str, expected: str) -> None:
    """Types mmengine's Runner builds: refused with the key and the registered names, the work dir not created (an
    unknown optimizer otherwise ends in ``TypeError: None is not a callable object``)."""
    message = cli_error(tmp_path, option)
    assert expected in message and "Registered: " in message
    assert not (tmp_path / "work").exists()


def test_an_entry_of_the_derived_schedule_is_refused_with_the_recipe_keys(tmp_path) -> None:
    """The recipe derives ``param_scheduler``; an override of one of its entries by index (which mmengine's merge
    turns into ``{"1": {...}}``, a KeyError inside the Runner) is refused naming the keys that change the schedule."""
    message = cli_error(tmp_path, "param_scheduler.1.type=CosineAnealingLR")
    assert "param_scheduler.1: this config's param_scheduler is derived from its recipe" in message
    assert "recipe.epochs / recipe.warmup_epochs / recipe.min_lr" in message
    assert not (tmp_path / "work").exists()


def test_a_type_of_another_toolbox_is_found_with_its_scope(tmp_path) -> None:
    message = cli_error(tmp_path, "train_dataloader.dataset.type=CustomDataset")
    assert "A type of another toolbox takes its scope: 'mmpretrain.CustomDataset'" in message
    cfg = Config.fromfile(CONFIG)
    cfg.merge_from_dict({"train_dataloader.dataset.type": "mmpretrain.CustomDataset"})
    check_runner_types(cfg)  # the advice is enough


@pytest.mark.parametrize("option, expected", [
    ("optim_wrapper.optimizer.lrr=0.1", "optim_wrapper.optimizer.lrr: AdamW takes no argument 'lrr'. Did you mean "
                                        "'lr'? It takes: params, lr, betas,"),
    ("optim_wrapper.optimizer.type=SGD", "optim_wrapper.optimizer.betas: SGD takes no argument 'betas'."),
])
def test_an_argument_the_optimizer_does_not_take_is_named(tmp_path, option: str, expected: str) -> None:
    assert expected in cli_error(tmp_path, option)
    assert not (tmp_path / "work").exists()


def test_registered_runner_types_pass() -> None:
    cfg = Config.fromfile(CONFIG)
    cfg.merge_from_dict({"param_scheduler.0.type": "LinearLR", "optim_wrapper.type": "OptimWrapper",
                         "optim_wrapper.optimizer.type": "AdamW", "train_dataloader.sampler.type": "DefaultSampler",
                         "train_dataloader.dataset.pipeline.2.type": "RandomFlip"})
    check_runner_types(cfg)


def test_an_unknown_step_of_a_switched_pipeline_names_the_key_to_edit() -> None:
    from mim_zoo.engine.pipeline import apply_pipeline_impl, pipeline_key

    cfg = Config.fromfile("configs/mae/vitb_800e.py")
    cfg.merge_from_dict({"pipelines.fast.pipeline.1.type": "DeferredRandomFlipp"})
    apply_pipeline_impl(cfg)
    with pytest.raises(UnknownPluginError, match=r"^pipelines.fast.pipeline.1.type: 'DeferredRandomFlipp' is not in "
                                                 r"the transform registry. Did you mean 'DeferredRandomFlip'"):
        check_runner_types(cfg, pipeline_key(cfg))


def test_unknown_custom_hook_lists_hooks() -> None:
    cfg = Config(dict(model=dict(type="MAE"), custom_hooks=[dict(type="MIMScheduleHok")]))
    with pytest.raises(UnknownPluginError, match=r"'MIMScheduleHok' is not a registered hook.*MIMScheduleHook"):
        check_config_types(cfg)


# --- data root and layout -------------------------------------------------------------------------------------------
def write_images(folder, count: int, size: int = 32) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        path = folder / f"img_{i}.JPEG"
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def test_missing_data_root_explains_the_layout(tmp_path) -> None:
    message = cli_error(tmp_path, f"train_dataloader.dataset.data_root={tmp_path}/imagenet")
    assert f"data root '{tmp_path}/imagenet' does not exist" in message
    assert f"Expected {tmp_path}/imagenet/train/<class>/<image>.JPEG" in message
    assert "train_dataloader.dataset.data_root=" in message


def test_data_root_pointing_at_the_split_folder(tmp_path) -> None:
    write_images(tmp_path / "n01440764", 2)  # the user gave .../train as the root
    with pytest.raises(FileNotFoundError, match=r"is not a directory \(found in .*: n01440764\).*looks like the "
                                                r"'train' folder; point data_root at its parent"):
        check_image_folder(str(tmp_path), "train")


def test_flat_image_folder_needs_class_folders(tmp_path) -> None:
    images = write_images(tmp_path / "train", 2)
    with pytest.raises(FileNotFoundError, match=r"has no class sub-folders.*holds images directly: move them into "
                                                r"sub-folders, one per class .*, or, for pretraining, which uses no "
                                                r"labels, into one folder of any name \(.*/train/all/\)\. Expected"):
        check_image_folder(str(tmp_path), "train")
    (tmp_path / "train" / "all").mkdir()  # the advice for pretraining is enough
    for image in images:
        os.rename(image, tmp_path / "train" / "all" / osp.basename(image))
    check_image_folder(str(tmp_path), "train")


def test_class_folders_without_images(tmp_path) -> None:
    (tmp_path / "train" / "cat").mkdir(parents=True)
    (tmp_path / "train" / "cat" / "notes.txt").write_text("no images here")
    with pytest.raises(FileNotFoundError, match=r"hold no images with the extensions .*\.jpeg.*has: notes\.txt"):
        check_image_folder(str(tmp_path), "train")


# --- unreadable images -------------------------------------------------------------------------------------------
@pytest.fixture()
def corrupt_root(tmp_path):
    """ImageNet layout with 6 good images and two unreadable ones (random bytes, empty file)."""
    good = write_images(tmp_path / "train" / "a", 3) + write_images(tmp_path / "train" / "b", 3)
    (tmp_path / "train" / "a" / "zz_garbage.JPEG").write_bytes(np.random.default_rng(1).bytes(3000))
    (tmp_path / "train" / "b" / "zz_empty.JPEG").write_bytes(b"")
    return tmp_path, good


def dataset_with(root, **loader_args) -> CustomDataset:
    pipeline = [dict(type=CheckedLoadImage, **loader_args), dict(type=PackInputs)]
    return CustomDataset(data_root=str(root), data_prefix="train", pipeline=pipeline)


def test_corrupt_image_is_named_even_from_a_data_worker(corrupt_root) -> None:
    root, _ = corrupt_root
    dataset = dataset_with(root)
    bad = [i for i in range(len(dataset)) if "zz_" in dataset.get_data_info(i)["img_path"]]
    with pytest.raises(CorruptImageError, match=r"cannot read training image '.*zz_garbage\.JPEG'.*on_corrupt='skip'"):
        dataset[bad[0]]
    loader = DataLoader(dataset, batch_size=len(dataset), num_workers=2, collate_fn=lambda batch: batch)
    with pytest.raises(CorruptImageError, match=r"cannot read training image '.*zz_"):
        next(iter(loader))


def test_corrupt_images_are_skipped_and_counted(corrupt_root) -> None:
    root, good = corrupt_root
    dataset = dataset_with(root, on_corrupt="skip")
    loader = DataLoader(dataset, batch_size=4, num_workers=2, collate_fn=lambda batch: batch)
    samples = [s for batch in loader for s in batch]
    assert len(samples) == len(dataset) == 8  # each unreadable file replaced by a readable one
    assert {s["data_samples"].img_path for s in samples} <= set(good)
    # each worker met one bad file (a re-drawn replacement may be bad again): the count is shared across workers
    assert dataset.pipeline.transforms[0].num_skipped >= 2
    strict = dataset_with(root, on_corrupt="skip", max_skipped=1)
    with pytest.raises(CorruptImageError, match="more than 1 unreadable training images"):
        [strict[i] for i in range(len(strict))]


def test_corrupt_image_stops_training_with_its_name(corrupt_root, tmp_path) -> None:
    root, _ = corrupt_root
    message = cli_error(tmp_path, f"train_dataloader.dataset.data_root={root}", "train_dataloader.dataset.indices=8",
                        "train_dataloader.batch_size=4", "default_hooks.reconstruction_vis=None")
    assert message.startswith("error: cannot read training image") and "zz_" in message
    assert "skip unreadable images: --cfg-options train_dataloader.dataset.pipeline.0.on_corrupt=skip " in message


# --- teacher checkpoints --------------------------------------------------------------------------------------------
TEACHER = dict(arch="vit_tiny_patch16_224", model_kwargs=dict(img_size=32, patch_size=4))


def test_missing_teacher_checkpoint(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"teacher vit_tiny_patch16_224: checkpoint file '.*nope\.pth' does "
                                                r"not exist"):
        TeacherTarget(checkpoint=str(tmp_path / "nope.pth"), **TEACHER)


def test_teacher_checkpoint_of_another_architecture_lists_mismatches(tmp_path) -> None:
    small = timm.create_model("vit_small_patch16_224", num_classes=0, img_size=32, patch_size=4)
    torch.save(small.state_dict(), tmp_path / "vit_small.pth")
    with pytest.raises(ValueError, match=r"does not match timm 'vit_tiny_patch16_224'.*shape mismatch \[.*blocks"):
        TeacherTarget(checkpoint=str(tmp_path / "vit_small.pth"), **TEACHER)


# --- checkpoints of another algorithm or size -----------------------------------------------------------------------
def test_load_from_a_checkpoint_of_another_size_lists_the_keys(tmp_path) -> None:
    cfg = Config.fromfile(CONFIG)
    cfg.model.encoder.embed_dim = 32  # the same config, a narrower encoder
    other = MODELS.build(cfg.model)
    torch.save({"meta": {"experiment_name": "mae_narrow"}, "state_dict": other.state_dict()}, tmp_path / "narrow.pth")
    message = cli_error(tmp_path, f"load_from={tmp_path}/narrow.pth")
    assert f"{tmp_path}/narrow.pth (written by run 'mae_narrow') does not fit MAE of this config" in message
    assert "shape mismatch (checkpoint vs model): decoder.embed.weight [32, 32] vs [32, 64]" in message


def test_load_from_an_encoder_export_lists_missing_and_unexpected_keys(tmp_path) -> None:
    model = MODELS.build(Config.fromfile(CONFIG).model)
    torch.save(model.export_encoder(), tmp_path / "encoder.pth")  # a plain timm state dict, not a MAE checkpoint
    message = cli_error(tmp_path, f"load_from={tmp_path}/encoder.pth")
    assert "missing in the checkpoint: decoder." in message and "not in the model: blocks.0." in message


# --- what the encoder cannot honour ---------------------------------------------------------------------------------
@pytest.mark.parametrize("option, expected", [
    ("model.masking.ratio=1.0", "model.masking.ratio: a mask ratio must lie strictly between 0 and 1, got 1.0"),
    ("model.masking.ratio=0.99", "model.masking.ratio: mask ratio 0.99 leaves no visible token on a 8x8 grid"),
    ("model.encoder.patch_size=5", "model.encoder.patch_size: 32 is not a multiple of 5 (img_size=32, patch_size=5)"),
    ("model.encoder.img_size=30", "model.encoder.patch_size: 30 is not a multiple of 4 (img_size=30, patch_size=4)"),
    ("model.encoder.img_size=48", "the training pipeline yields (3, 32, 32) images, which the encoder cannot take: "
                                  "vit_tiny_patch16_224 was built for 48x48 images"),
])
def test_settings_the_encoder_cannot_honour(tmp_path, option: str, expected: str) -> None:
    assert expected in cli_error(tmp_path, option)


@pytest.mark.parametrize("option, expected", [
    ("model.maskng.ratio=0.5", "model.maskng: MAE takes no argument 'maskng'. Did you mean 'masking'?"),
    ("model.decoder.depthh=2", "model.decoder.depthh: MAEDecoder takes no argument 'depthh'. Did you mean 'depth'?"),
    ("model.encoder.pach_size=4", "model.encoder.pach_size: VisionTransformer.__init__() got an unexpected keyword "
                                  "argument 'pach_size'"),
    ("model.masking.type=RandomMask", "model.masking.type: 'RandomMask' is not a registered mask generator"),
])
def test_a_typo_in_a_config_key_names_the_key(tmp_path, option: str, expected: str) -> None:
    assert expected in cli_error(tmp_path, option)


def test_pipeline_images_the_encoder_was_not_built_for(tmp_path) -> None:
    message = cli_error(tmp_path, "train_pipeline.1.scale=30", "train_dataloader.dataset.pipeline.1.scale=30")
    assert "yields (3, 30, 30) images" in message and "built for 32x32 images" in message
    assert "an encoder's image side must be a multiple of its patch size, 4" in message


# --- batch preconditions --------------------------------------------------------------------------------------------
def test_an_odd_batch_is_refused_with_its_key_before_the_runner(tmp_path) -> None:
    """MixMAE pairs each image with its batch mirror: an odd per-process batch is refused by the config checks,
    naming the key, before the Runner is built (tests/test_tools.py: nothing is written)."""
    with pytest.raises(InvalidValueError, match=r"^train_dataloader.batch_size: MixMAE mixes each image with its "
                                                r"batch mirror .* an even number of images; got 15"):
        build_runner("configs/mixmae/tiny_cpu.py", str(tmp_path / "work"), {"train_dataloader.batch_size": 15})
    assert not osp.exists(tmp_path / "work")


def test_an_odd_last_batch_is_checked_before_training(tmp_path) -> None:
    """An even batch whose last partial batch is odd (drop_last=False: 37 images in batches of 16 leave 5) is
    refused before the first iteration, once the dataset's length is known."""
    options = {"train_dataloader.batch_size": 16, "train_dataloader.dataset.indices": 37,
               "train_dataloader.drop_last": False}
    with single_thread():
        runner = build_runner("configs/mixmae/tiny_cpu.py", str(tmp_path), options)
        with pytest.raises(RunAborted, match=r"MixMAE cannot train on a per-process batch of 5 \(1 "
                                             r"process\(es\), train_dataloader.batch_size=16, "
                                             r"drop_last=False\): MixMAE mixes each image"):
            runner.train()
    assert not osp.exists(tmp_path / "epoch_1.pth")
