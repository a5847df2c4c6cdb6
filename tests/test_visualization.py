"""Pictures: reconstruction panels (math of the columns), the two drawing tools for every tiny config and every
mask generator, loss curves across resumed runs, and what a training run leaves behind (console progress with ETA,
TensorBoard scalars and images, a reconstruction PNG per epoch and a loss-curve PNG)."""

from __future__ import annotations

import glob
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.visualization import LocalVisBackend
from PIL import Image

from mim_zoo.core.contracts import PixelTargetProtocol
from mim_zoo.engine.config import make_synthetic_data
from mim_zoo.engine.visualization import (
    MASK_GRAY,
    denormalize,
    generator_notes,
    loss_figure,
    mask_figure,
    mask_samples,
    mask_to_pixels,
    plot_loss_curve,
    read_scalars,
    reconstruction_figure,
    reconstruction_panels,
    visualize_batch,
)
from mim_zoo.registry import MASK_GENERATORS, MODELS, registered_names

from .helpers.training import REPO, single_thread, tiny_configs, train_cli

MEAN, STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]


def load_tool(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, osp.join(REPO, "tools", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- panels -------------------------------------------------------------------------------------------------------
def test_reconstruction_panels_compose_the_columns_exactly() -> None:
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(2, 3, 8, 8, generator=gen)
    recon = torch.randn(2, 3, 8, 8, generator=gen)
    mask = torch.tensor([[True, False, False, True], [False, True, True, True]])  # 2x2 grid of 4x4 patches
    outputs = {"mask": mask, "reconstruction": recon, "mixed": images.flip(0), "stat_ratio": torch.tensor(0.5),
               "tokens": torch.zeros(2, 4, 48)}
    panels = dict(reconstruction_panels(images, outputs, MEAN, STD))
    # every [B, 3, H, W] output gets a column; other entries do not
    assert list(panels) == ["original", "masked", "reconstruction", "reconstruction + visible", "mixed"]
    original = ((images * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)) / 255)
    np.testing.assert_allclose(panels["original"], original.clamp(0, 1).permute(0, 2, 3, 1).numpy(), atol=1e-6)
    pixel_mask = mask.view(2, 2, 2).repeat_interleave(4, 1).repeat_interleave(4, 2).numpy()  # [B, H, W]
    np.testing.assert_array_equal(panels["masked"][pixel_mask], MASK_GRAY)
    np.testing.assert_array_equal(panels["masked"][~pixel_mask], panels["original"][~pixel_mask])
    pasted, recon_px = panels["reconstruction + visible"], denormalize(recon, MEAN, STD)
    np.testing.assert_array_equal(pasted[pixel_mask], recon_px[pixel_mask])
    np.testing.assert_array_equal(pasted[~pixel_mask], panels["original"][~pixel_mask])
    np.testing.assert_allclose(panels["mixed"], panels["original"][::-1], atol=1e-6)


def test_mask_on_a_coarser_grid_is_upsampled_and_a_non_tiling_one_refused() -> None:
    mask = torch.tensor([[True, False, False, False]])  # a 2x2 grid over 8x8 pixels (MixMAE mixes on stride 32)
    pixels = mask_to_pixels(mask, (8, 8))[0, 0]
    assert pixels[:4, :4].all() and not pixels[4:].any() and not pixels[:, 4:].any()
    with pytest.raises(ValueError, match="a mask of 5 tokens does not tile a 8x8 image"):
        mask_to_pixels(torch.ones(1, 5, dtype=torch.bool), (8, 8))


# --- tools --------------------------------------------------------------------------------------------------------
def write_photo(path: str, size: tuple[int, int], seed: int) -> str:
    pixels = np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture()
def drawn_figures(monkeypatch) -> dict[str, list]:
    """The figures :func:`reconstruction_figure`, :func:`mask_figure` and :func:`loss_figure` draw while the test
    runs (the real functions, their results kept): ``{"reconstruction": [...], "mask": [...], "loss": [...]}``."""
    from mim_zoo.engine import visualization

    figures: dict[str, list] = {"reconstruction": [], "mask": [], "loss": []}

    def keeping(kind: str, draw):
        def keep(*args, **kwargs):
            figures[kind].append(draw(*args, **kwargs))
            return figures[kind][-1]
        return keep

    monkeypatch.setattr(visualization, "reconstruction_figure",
                        keeping("reconstruction", visualization.reconstruction_figure))
    monkeypatch.setattr(visualization, "mask_figure", keeping("mask", visualization.mask_figure))
    monkeypatch.setattr(visualization, "loss_figure", keeping("loss", visualization.loss_figure))
    return figures


def row_labels(fig) -> list[str]:
    """The y labels of the first column: one per row of a reconstruction figure."""
    columns = sum(1 for ax in fig.axes if ax.get_subplotspec().rowspan.start == 0)
    return [ax.get_ylabel() for ax in fig.axes[::columns]]


@pytest.mark.parametrize("config", tiny_configs(combos=True))
def test_visualize_reconstruction_tool_draws_every_algorithm(config: str, tmp_path, drawn_figures) -> None:
    cfg = Config.fromfile(osp.join(REPO, config))
    make_synthetic_data(cfg)  # MR-MAE's random teacher files
    model = MODELS.build(cfg.model)
    torch.save({"meta": {}, "state_dict": model.state_dict()}, tmp_path / "ckpt.pth")
    photos = [write_photo(str(tmp_path / f"photo{i}.jpg"), (50 + 7 * i, 40), seed=i) for i in range(2)]
    out = str(tmp_path / "recon.png")
    tool = load_tool("visualize_reconstruction")
    with single_thread():
        tool.main([config, str(tmp_path / "ckpt.pth"), *photos, "--out", out])
        size = model.encoder.grid_size[0] * model.encoder.patch_size
        images = tool.load_images(photos, size)  # resized and centre-cropped to the encoder's input
        assert images.shape == (2, 3, size, size) and images.dtype == torch.uint8
        inputs = model.data_preprocessor({"inputs": images, "data_samples": None}, False)["inputs"]
        titles = [title for title, _ in visualize_batch(model.eval(), inputs, seed=0)]
    assert titles[:2] == ["original", "masked"]
    if any(isinstance(t, PixelTargetProtocol) for t in model.targets()):  # pixel targets are drawn, pasted back
        assert titles[2:4] == ["reconstruction", "reconstruction + visible"]
    width, height = Image.open(out).size  # one column per panel, one row per image (1.6 in each at 100 dpi)
    assert width == pytest.approx(160 * len(titles), rel=0.02) and height > 2 * 160
    (fig,) = drawn_figures["reconstruction"]
    assert row_labels(fig) == ["photo0.jpg", "photo1.jpg"] and fig.get_supxlabel()  # rows named, columns explained


def test_visualize_reconstruction_tool_names_bad_inputs(tmp_path) -> None:
    config = "configs/mae/tiny_cpu.py"
    cfg = Config.fromfile(osp.join(REPO, config))
    cfg.model.decoder.embed_dim = 16  # a checkpoint of another size
    torch.save({"state_dict": MODELS.build(cfg.model).state_dict()}, tmp_path / "other.pth")
    photo = write_photo(str(tmp_path / "photo.jpg"), (32, 32), seed=0)
    tool = load_tool("visualize_reconstruction")
    with pytest.raises(SystemExit, match=r"other\.pth does not fit MAE of this config: shape mismatch .*decoder"):
        tool.main([config, str(tmp_path / "other.pth"), photo, "--out", str(tmp_path / "x.png")])
    torch.save({"state_dict": MODELS.build(Config.fromfile(osp.join(REPO, config)).model).state_dict()},
               tmp_path / "ok.pth")
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(SystemExit, match=r"cannot read image '.*broken\.jpg'"):
        tool.main([config, str(tmp_path / "ok.pth"), str(tmp_path / "broken.jpg"), "--out", str(tmp_path / "x.png")])


def test_visualize_reconstruction_tool_wants_an_image_count_the_algorithm_takes(tmp_path) -> None:
    config = "configs/mixmae/tiny_cpu.py"
    torch.save({"state_dict": MODELS.build(Config.fromfile(osp.join(REPO, config)).model).state_dict()},
               tmp_path / "ckpt.pth")
    photos = [write_photo(str(tmp_path / f"photo{i}.jpg"), (32, 32), seed=i) for i in range(3)]
    tool = load_tool("visualize_reconstruction")
    with pytest.raises(SystemExit) as exit_:
        tool.main([config, str(tmp_path / "ckpt.pth"), *photos, "--out", str(tmp_path / "x.png")])
    message = str(exit_.value)
    assert message.startswith("error: MixMAE cannot draw 3 images: MixMAE mixes each image with its batch mirror")
    assert "an even number of images" in message and "Pass a number of image files" in message
    assert "batch_size" not in message  # not the training fix


# --- what the figures explain ---------------------------------------------------------------------------------------
def figure_texts(fig) -> list[str]:
    fig.canvas.draw()
    return [t.get_text() for t in fig.findobj(lambda artist: hasattr(artist, "get_text")) if t.get_text()]


@pytest.mark.parametrize("config", tiny_configs(combos=True))
def test_reconstruction_figure_labels_rows_and_explains_every_column(config: str) -> None:
    cfg = Config.fromfile(osp.join(REPO, config))
    make_synthetic_data(cfg)  # MR-MAE's random teacher files
    model = MODELS.build(cfg.model).eval()
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    panels = visualize_batch(model, images, seed=0)
    notes = model.reconstruction_notes
    undocumented = [name for name, _ in panels if name != "original" and name not in notes]
    assert not undocumented, f"{type(model).__name__}.reconstruction_notes does not explain {undocumented}"
    fig = reconstruction_figure(panels, title=f"{type(model).__name__}, epoch 1", row_labels=["a.JPEG", "b.JPEG"],
                                notes=notes)
    axes = fig.axes
    assert [axes[r * len(panels)].get_ylabel() for r in range(2)] == ["a.JPEG", "b.JPEG"]
    caption = fig.get_supxlabel()
    for name, _ in panels[1:]:
        assert f"{name}: " in caption
    if "reconstruction" in dict(panels) and type(model).__name__ != "MixMAE":  # a pixel loss on masked patches
        assert "masked patches only" in caption and "speckle" in caption
    renderer = fig.canvas.get_renderer()
    title = fig._suptitle.get_window_extent(renderer)
    for ax in axes[:len(panels)]:  # the title sits above every column header
        assert title.y0 >= ax.title.get_window_extent(renderer).y1


def test_mixmae_figure_says_what_its_reconstructions_are() -> None:
    from mim_zoo.core.algorithms import MixMAE

    notes = MixMAE.reconstruction_notes
    assert "stream in which it was hidden" in notes["reconstruction"]
    assert "predicted from mixed input i" in notes["reconstruction primary"]
    assert "one mask per batch" in notes["masked"] and "design" in notes["masked"]


def test_mask_figure_has_a_legend_and_names_one_mask_per_batch() -> None:
    samples = mask_samples((14, 14), num_samples=3, seed=0)
    fig = mask_figure(samples, notes=generator_notes())
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["masked (hidden from the encoder)", "visible"]
    labels = {name.split("\n")[0]: ax.get_ylabel() for name, ax in zip(samples, fig.axes[::3], strict=True)}
    assert "one mask per batch" in labels["MixingMask"] and "one mask per batch" not in labels["RandomMasking"]
    assert "MixingMask: MixMIM's mixing mask: one random mask per batch, shared by every sample" in fig.get_supxlabel()


def test_loss_figure_has_a_title_and_draws_a_single_term_once() -> None:
    single = [{"step": s, "loss": 1.0 / s, "loss_rec": 1.0 / s} for s in range(1, 5)]
    fig = loss_figure(single, "MAE training loss")
    (ax,) = fig.axes
    assert ax.get_title() == "MAE training loss"
    assert [line.get_label() for line in ax.get_lines()] == ["loss_rec (= loss: the only term)"]
    several = [{"step": s, "loss": 3.0, "loss_pixel": 1.0, "loss_feature": 2.0} for s in range(1, 5)]
    labels = [line.get_label() for line in loss_figure(several, "BootMAE training loss").axes[0].get_lines()]
    assert labels == ["loss (the sum of the terms)", "loss_feature", "loss_pixel"]


def test_mask_samples_cover_every_registered_generator() -> None:
    samples = mask_samples((14, 14), num_samples=3, seed=0)
    assert len(samples) == len(registered_names(MASK_GENERATORS))  # a new generator is drawn without touching this
    for label, masks in samples.items():
        name = label.split("\n")[0]
        assert name in registered_names(MASK_GENERATORS)
        assert torch.is_tensor(masks), f"{name} could not draw with its defaults on 14x14: {masks}"
        assert masks.shape == (3, 14, 14) and masks.dtype == torch.bool
        exact = MASK_GENERATORS.get(name)().num_masked((14, 14))
        if exact is not None:  # the picture shows the generator's own count
            assert (masks.flatten(1).sum(1) == exact).all()
    assert torch.equal(samples["RandomMasking"], mask_samples((14, 14), 3, seed=0)["RandomMasking"])  # seeded


def test_visualize_masks_tool(tmp_path, drawn_figures) -> None:
    tool = load_tool("visualize_masks")
    out = tool.main(["--out", str(tmp_path / "all.png"), "--num", "2"])
    assert Image.open(out).size[1] > 100 * len(registered_names(MASK_GENERATORS)) * 0.5  # one row per generator
    (fig,) = drawn_figures["mask"]  # the tool's picture says which colour is masked and why MixingMask repeats
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["masked (hidden from the encoder)", "visible"]
    assert "MixingMask: MixMIM's mixing mask: one random mask per batch" in fig.get_supxlabel()
    out = tool.main(["--config", "configs/mae/tiny_cpu.py", "--out", str(tmp_path / "mae.png")])
    assert osp.isfile(out)


# --- loss curves --------------------------------------------------------------------------------------------------
def test_loss_curve_joins_a_run_and_its_resumed_continuation(tmp_path) -> None:
    runs = (("20250101_000000", range(1, 7), 0.0), ("20250101_010000", range(5, 9), 1.0))  # resumed at step 5
    for run, steps, offset in runs:
        backend = LocalVisBackend(save_dir=str(tmp_path / run / "vis_data"))
        for step in steps:
            backend.add_scalars({"loss": 10.0 / step + offset, "loss_rec": 1.0, "lr": 0.1}, step=step)
    records = read_scalars(str(tmp_path))
    assert [r["step"] for r in records] == list(range(1, 9))
    assert records[5]["loss"] == pytest.approx(10 / 6 + 1)  # the resumed run's record of step 6 wins
    out = plot_loss_curve(str(tmp_path), str(tmp_path / "curve.png"))
    assert out and Image.open(out).size[0] > 300
    assert plot_loss_curve(str(tmp_path / "empty"), str(tmp_path / "none.png")) is None


# --- what a training run leaves behind ------------------------------------------------------------------------------
def test_training_logs_progress_to_console_and_tensorboard_and_draws_pictures(tmp_path, drawn_figures) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    work_dir = str(tmp_path)
    assert train_cli(["configs/mae/tiny_cpu.py", "--work-dir", work_dir, "--cfg-options",
                      "train_dataloader.dataset.indices=32", "train_cfg.max_epochs=2"]) == ""
    log = open(glob.glob(osp.join(work_dir, "*", "*.log"))[0]).read()
    assert "Epoch(train) [2][2/2]" in log and "eta: " in log  # progress and time left, on the console and in the log
    events = EventAccumulator(glob.glob(osp.join(work_dir, "*", "vis_data", "events.out.tfevents.*"))[0])
    events.Reload()
    assert len(events.Scalars("loss")) == 4 and "reconstruction" in events.Tags()["images"]
    for name in ("reconstruction_epoch_1.png", "reconstruction_epoch_2.png", "loss_curve.png"):
        assert Image.open(osp.join(work_dir, "vis", name)).size[0] > 300
    labels = row_labels(drawn_figures["reconstruction"][0])  # the hook names each row's training image
    assert len(labels) == 4 and all(label.endswith(".JPEG") for label in labels) and len(set(labels)) == 4
    (ax,) = drawn_figures["loss"][-1].axes  # titled; MAE's single term drawn once
    assert ax.get_title() == f"MAE training loss ({osp.basename(work_dir)})"
    assert [line.get_label() for line in ax.get_lines()] == ["loss_rec (= loss: the only term)"]
