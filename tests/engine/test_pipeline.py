"""The input pipeline (mim_zoo/engine/pipeline): crop boxes distributed as mmpretrain's RandomResizedCrop, pixels as
a full-resolution decode + crop + resize, flips, dtypes, seeds, the nvjpeg path on CPU, the config switch, and
whole training runs on JPEG files in ImageNet's folder layout.

Tolerances, and why:
* full-resolution decode vs mmpretrain's pipeline: the same decoder (OpenCV) and crop box; the resize is torch's
  uint8 port of Pillow's filters, with the same weights but the passes in a fixed order (horizontal first) where
  Pillow 13 sometimes runs the vertical one first: the intermediate rounding and clipping then differ, so a few
  pixels near strong edges move by more than one grey level. Asserted: mean |diff| <= 0.1 grey level and at most
  0.5% of the values more than 2 apart (measured on these photo-like files: about 0.05 and 0.1%).
* decode at a DCT scale 1/s vs full resolution: libjpeg's scaled IDCT keeps the 8/s lowest frequencies of each
  8x8 block at full strength, where the full-resolution path attenuates them progressively with the bicubic
  filter; the two differ in the top octave of the reduced image. With the crop >= 2x the output at 1/s
  (``dct_headroom=2``, the default) the final antialiasing filter removes most of that octave: PSNR >= 40 dB
  asserted (measured 44-46 dB on this textured photo); with the least decoding (``dct_headroom=1``) >= 30 dB
  (measured 33-45 dB).
* crop-box statistics: seeded draws, two-sample Kolmogorov-Smirnov distance below its critical value at
  alpha = 1e-4, c(alpha) * sqrt(2 / n) with c = sqrt(-ln(alpha / 2) / 2); means within 5 standard errors.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mmcv.transforms import RandomFlip
from mmengine.config import Config
from mmengine.dataset import default_collate, pseudo_collate
from mmengine.runner import Runner
from mmpretrain.datasets import ImageNet, PackInputs, RandomResizedCrop
from mmpretrain.models import SelfSupDataPreprocessor
from PIL import Image, ImageOps

from mim_zoo.engine.config import prepare_config
from mim_zoo.engine.pipeline import (
    CropBox,
    DecodeRandomResizedCrop,
    DeferredRandomFlip,
    NvJpegDataPreprocessor,
    PackEncodedInputs,
    apply_pipeline_impl,
    collate_encoded,
    dct_scale,
    default_workers,
    orient,
    resized_crop,
    resolve_workers,
    select_pipeline,
)
from mim_zoo.engine.pipeline.device import unpack
from mim_zoo.engine.pipeline.geometry import interpolate
from mim_zoo.engine.transforms import CheckedLoadImage, CorruptImageError
from mim_zoo.synthetic.photos import natural_image, write_photo_folder

REPO = Path(__file__).resolve().parents[2]
CROP = dict(scale=224, crop_ratio_range=(0.2, 1.0), interpolation="bicubic")
MEAN, STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]


def ks_critical(n: int, m: int, alpha: float = 1e-4) -> float:
    return math.sqrt(-math.log(alpha / 2) / 2) * math.sqrt((n + m) / (n * m))


def ks_distance(a: np.ndarray, b: np.ndarray) -> float:
    grid = np.union1d(a, b)
    return float(np.abs(np.searchsorted(np.sort(a), grid, "right") / len(a)
                        - np.searchsorted(np.sort(b), grid, "right") / len(b)).max())


def jpeg_bytes(rgb: np.ndarray, quality: int = 90, **save: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=quality, **save)
    return buffer.getvalue()


def reference(path: str, seed: int) -> dict:
    """mmpretrain's pipeline as the config had it, seeded: CheckedLoadImage -> RandomResizedCrop -> RandomFlip."""
    np.random.seed(seed)
    steps = [CheckedLoadImage(), RandomResizedCrop(**CROP, backend="pillow"), RandomFlip(prob=0.5), PackInputs()]
    results = {"img_path": path}
    for step in steps:
        results = step(results)
    return results


def ours(path: str, seed: int, **args: object) -> dict:
    np.random.seed(seed)
    results = DecodeRandomResizedCrop(**CROP, **args)({"img_path": path})
    return PackInputs()(RandomFlip(prob=0.5)(results))


def assert_close_to_reference(got: torch.Tensor, expected: torch.Tensor) -> None:
    diff = (got.int() - expected.int()).abs().double()
    assert got.shape == expected.shape and got.dtype == expected.dtype == torch.uint8
    assert diff.mean() <= 0.1 and (diff > 2).double().mean() <= 0.005, (diff.mean(), (diff > 2).double().mean())


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = (a.double() - b.double()).square().mean().item()
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[str]:
    """24 photograph-like JPEGs of ImageNet's aspect ratios, at most 420 pixels a side, in ImageNet's layout."""
    root = tmp_path_factory.mktemp("photos")
    return [str(p) for p in write_photo_folder(root, 24, seed=0, num_classes=3, max_side=420)]


@pytest.fixture(scope="module")
def large_photo(tmp_path_factory) -> str:
    """One 1500 x 1100 photograph-like JPEG (crops of it decode at 1/2 and 1/4)."""
    path = tmp_path_factory.mktemp("large") / "large.JPEG"
    path.write_bytes(jpeg_bytes(natural_image(np.random.default_rng(3), 1100, 1500, detail=2.3)))
    return str(path)


@pytest.fixture(scope="module")
def odd_files(tmp_path_factory) -> dict[str, str]:
    """Files ImageNet holds a few of: CMYK and greyscale JPEGs, PNGs (RGBA, palette), EXIF-rotated JPEGs."""
    folder = tmp_path_factory.mktemp("odd")
    rgb = natural_image(np.random.default_rng(5), 300, 400)
    files = {"cmyk": Image.fromarray(rgb).convert("CMYK"), "grey": Image.fromarray(rgb).convert("L"),
             "rgba_png": Image.fromarray(rgb).convert("RGBA"), "palette_png": Image.fromarray(rgb).quantize(64)}
    paths = {}
    for name, image in files.items():
        paths[name] = str(folder / (f"{name}.png" if name.endswith("png") else f"{name}.JPEG"))
        image.save(paths[name], **({} if name.endswith("png") else {"quality": 90}))
    for orientation in (2, 3, 6, 8):
        exif = Image.Exif()
        exif[0x0112] = orientation
        paths[f"exif{orientation}"] = str(folder / f"exif{orientation}.JPEG")
        Path(paths[f"exif{orientation}"]).write_bytes(jpeg_bytes(rgb, exif=exif))
    return paths


# --- geometry ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("orientation", range(1, 9))
def test_orient_is_pils_exif_transpose(orientation):
    stored = np.random.default_rng(orientation).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    image = Image.open(io.BytesIO(_png_with_exif(stored, exif)))
    expected = np.asarray(ImageOps.exif_transpose(image))
    got = orient(torch.from_numpy(stored).permute(2, 0, 1), orientation).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(got, expected)


def _png_with_exif(rgb: np.ndarray, exif: Image.Exif) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "PNG", exif=exif)
    return buffer.getvalue()


def test_dct_scale_by_hand():
    assert dct_scale(CropBox(0, 0, 460, 528), (224, 224)) == 2  # 230 x 264 at 1/2, still >= 224
    assert dct_scale(CropBox(0, 0, 460, 528), (224, 224), headroom=2) == 1  # 230 < 2 x 224
    assert dct_scale(CropBox(0, 0, 1800, 1900), (224, 224)) == 8 and dct_scale(CropBox(0, 0, 900, 1000), (224, 224),
                                                                                headroom=2) == 2
    assert dct_scale(CropBox(0, 0, 100, 120), (224, 224)) == 1  # smaller than the output: enlarged from full pixels


@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear", "nearest"])
@pytest.mark.parametrize("box", [CropBox(20, 30, 300, 260), CropBox(0, 0, 150, 120), CropBox(5, 7, 230, 400)])
def test_resized_crop_is_crop_then_pillow_resize(interpolation, box):
    """A reduction, an enlargement and a mixed one against mmpretrain's crop (a copy) + Pillow resize."""
    bgr = natural_image(np.random.default_rng(11), 480, 480)[..., ::-1].copy()
    crop = np.ascontiguousarray(bgr[box.top:box.top + box.height, box.left:box.left + box.width])
    resample = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST}[interpolation]
    expected = torch.from_numpy(np.array(Image.fromarray(crop).resize((224, 224), resample))).permute(2, 0, 1)
    got = resized_crop(torch.from_numpy(bgr).permute(2, 0, 1), box, (224, 224), interpolation)
    assert_close_to_reference(got, expected)
    if interpolation == "nearest":
        assert torch.equal(got, expected)  # no filter, no rounding: exactly Pillow's centre sampling


def test_float_kernel_of_the_gpu_path_matches_the_uint8_kernel(photos):
    """The branch CUDA takes (float32, rounded once at the end) against the CPU uint8 kernel, which rounds and clips
    to 0-255 between its passes: that intermediate rounding (uniform in +-0.5, through the second filter) gives a
    mean difference of about 0.2 grey level, and more only where the first pass's bicubic overshoot was clipped
    (saturated edges: 0.1-0.6% of the values here)."""
    images = torch.from_numpy(cv2.imread(photos[1])).permute(2, 0, 1)[None]
    for size in [(224, 224), (96, 300)]:
        exact = interpolate(images, size, "bicubic", uint8_kernel=False)
        diff = (exact.int() - interpolate(images, size, "bicubic", uint8_kernel=True).int()).abs().double()
        assert exact.dtype == torch.uint8 and diff.mean() < 0.3 and (diff > 1).double().mean() < 0.01


def test_unknown_interpolation_and_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="interpolation 'lanczos' has no torch kernel.*pipeline_impl='mmpretrain'"):
        DecodeRandomResizedCrop(224, interpolation="lanczos")
    with pytest.raises(ValueError, match="decode must be 'cpu' or 'device'"):
        DecodeRandomResizedCrop(224, decode="gpu")
    with pytest.raises(ValueError, match="dct_headroom must be >= 1"):
        DecodeRandomResizedCrop(224, dct_headroom=0.5)


# --- crop boxes ---------------------------------------------------------------------------------------------------
def _boxes(transform: object, path: str, seed: int, n: int) -> np.ndarray:
    np.random.seed(seed)
    return np.array([transform({"img_path": path})["crop_box"] for _ in range(n)], dtype=float)


def _reference_boxes(size: tuple[int, int], seed: int, n: int, **args: object) -> np.ndarray:
    np.random.seed(seed)
    crop = RandomResizedCrop(**{**CROP, **args}, backend="pillow")
    image = np.empty((*size, 0), np.uint8)  # rand_crop_params reads img.shape[:2] only
    return np.array([crop.rand_crop_params(image) for _ in range(n)], dtype=float)


def test_crop_boxes_are_mmpretrains_draw_for_draw(photos):
    """Same seed, same numpy draws: the very boxes mmpretrain's RandomResizedCrop picks on the decoded image."""
    for path in photos[:6]:
        height, width = cv2.imread(path).shape[:2]
        ours_boxes = _boxes(DecodeRandomResizedCrop(**CROP, decode="device"), path, seed=7, n=50)
        np.testing.assert_array_equal(ours_boxes, _reference_boxes((height, width), seed=7, n=50))


@pytest.mark.parametrize("size", [(375, 500), (300, 1000)], ids=["500x375", "1000x300-fallbacks"])
def test_crop_box_statistics_match_mmpretrain(tmp_path, size):
    """Independent seeds, 10,000 draws each: area fraction and log aspect ratio (means, quantiles, KS distance) and
    the share of centre-crop fallbacks. A 1000 x 300 image needs the fallback often (wide crops do not fit)."""
    path = tmp_path / "img.JPEG"
    path.write_bytes(jpeg_bytes(np.full((*size, 3), 128, np.uint8)))
    n = 10_000
    got = _boxes(DecodeRandomResizedCrop(**CROP, decode="device"), str(path), seed=1, n=n)
    expected = _reference_boxes(size, seed=2, n=n)
    control = _reference_boxes(size, seed=3, n=n, crop_ratio_range=(0.25, 1.0))  # a slightly different crop
    area = size[0] * size[1]
    for stat in (lambda b: b[:, 2] * b[:, 3] / area, lambda b: np.log(b[:, 3] / b[:, 2])):
        a, b = stat(got), stat(expected)
        assert abs(a.mean() - b.mean()) <= 5 * math.sqrt(a.var() / n + b.var() / n)
        np.testing.assert_allclose(np.quantile(a, [0.05, 0.25, 0.5, 0.75, 0.95]),
                                   np.quantile(b, [0.05, 0.25, 0.5, 0.75, 0.95]), atol=0.03)
        assert ks_distance(a, b) < ks_critical(n, n)
    assert ks_distance(got[:, 2] * got[:, 3] / area, control[:, 2] * control[:, 3] / area) > ks_critical(n, n)
    fallbacks = [np.mean((b[:, 0] == (size[0] - b[:, 2]) // 2) & (b[:, 1] == (size[1] - b[:, 3]) // 2)
                         & ((b[:, 2] == size[0]) | (b[:, 3] == size[1]))) for b in (got, expected)]
    assert abs(fallbacks[0] - fallbacks[1]) <= 5 * math.sqrt(0.25 * 2 / n)


# --- pixels -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args", [{"dct_headroom": None}, {}], ids=["full-resolution", "default"])
def test_pixels_match_mmpretrains_pipeline(photos, args):
    """The same crop box and flip (same seed), the same decoder; only the resize kernel differs (see the module
    docstring). These <= 420-pixel files never decode at a reduced scale."""
    for index, path in enumerate(photos):
        got, expected = ours(path, index, **args), reference(path, index)
        assert got["data_samples"].ori_shape == expected["data_samples"].ori_shape
        assert got["data_samples"].flip == expected["data_samples"].flip
        assert_close_to_reference(got["inputs"], expected["inputs"])


@pytest.mark.parametrize("headroom, min_psnr", [(2.0, 40.0), (1.0, 30.0)])
def test_dct_scaled_decode_stays_close_to_a_full_decode(large_photo, headroom, min_psnr):
    """Crops of a 1500 x 1100 photo decoded at the scale the transform picks, against the full-resolution decode of
    the same crop box; the transform picks the largest scale that leaves the crop >= headroom x 224."""
    transform = DecodeRandomResizedCrop(**CROP, dct_headroom=headroom)
    full = DecodeRandomResizedCrop(**CROP, dct_headroom=None)
    scales = []
    for seed in range(24):
        np.random.seed(seed)
        got = transform({"img_path": large_photo})
        np.random.seed(seed)
        expected = full({"img_path": large_photo})
        box = got["crop_box"]
        assert got["dct_scale"] == dct_scale(box, (224, 224), headroom) and expected["crop_box"] == box
        scales.append(got["dct_scale"])
        assert psnr(torch.from_numpy(got["img"].copy()), torch.from_numpy(expected["img"].copy())) >= min_psnr
    assert set(scales) >= ({1, 2} if headroom == 2 else {2, 4})  # the crops exercised reduced decoding


def test_odd_files_match_mmpretrains_pipeline(odd_files):
    """CMYK and greyscale JPEGs, RGBA and palette PNGs (no DCT scaling), EXIF-rotated JPEGs (the box is sampled on
    the displayed image, as OpenCV's IMREAD_COLOR shows it to mmpretrain): all RGB 224 x 224 like the reference."""
    for index, path in enumerate(odd_files.values()):
        got, expected = ours(path, index), reference(path, index)
        assert got["data_samples"].ori_shape == expected["data_samples"].ori_shape, path
        assert got["inputs"].shape == (3, 224, 224)
        assert_close_to_reference(got["inputs"], expected["inputs"])


# --- flips, dtypes, seeds -----------------------------------------------------------------------------------------
def test_flip_probability_and_deferred_flip_draws():
    """RandomFlip(0.5) flips half the images (4,000 draws: within 4 standard deviations, 0.032); the deferred flip of
    the nvjpeg path draws exactly the same decisions and leaves the pixels alone."""
    n = 4000
    np.random.seed(0)
    flips = [RandomFlip(prob=0.5)({"img": np.zeros((2, 2, 3), np.uint8)})["flip"] for _ in range(n)]
    np.random.seed(0)
    deferred = DeferredRandomFlip(prob=0.5)
    results = [deferred({"img": torch.arange(5)}) for _ in range(n)]
    assert [r["flip"] for r in results] == flips and abs(np.mean(flips) - 0.5) <= 4 * math.sqrt(0.25 / n)
    assert all(torch.equal(r["img"], torch.arange(5)) for r in results)
    assert {r["flip_direction"] for r in results} == {"horizontal", None}


def test_a_flip_mirrors_the_same_crop(photos):
    np.random.seed(3)
    plain = DecodeRandomResizedCrop(**CROP)({"img_path": photos[2]})
    np.random.seed(3)
    flipped = RandomFlip(prob=1.0)(DecodeRandomResizedCrop(**CROP)({"img_path": photos[2]}))
    np.testing.assert_array_equal(flipped["img"], plain["img"][:, ::-1])


def loader_cfg(root: Path, impl: str, batch: int = 4, workers: int = 0) -> dict:
    cfg = Config.fromfile(str(REPO / "configs" / "_base_" / "datasets" / "imagenet_pretrain.py"))
    select_pipeline(cfg, impl)
    loader = cfg.train_dataloader.to_dict()
    loader.update(batch_size=batch, num_workers=workers, pin_memory=False)
    loader["dataset"].update(data_root=str(root), metainfo=dict(classes=sorted(p.name for p in (root / "train")
                                                                               .iterdir())))
    resolve_workers(loader)
    return loader


def test_batches_stay_uint8_until_the_data_preprocessor_normalises(photos):
    root = Path(photos[0]).parents[2]
    batch = next(iter(Runner.build_dataloader(loader_cfg(root, "fast"), seed=0)))
    assert batch["inputs"].dtype == torch.uint8 and batch["inputs"].shape == (4, 3, 224, 224)
    preprocessor = SelfSupDataPreprocessor(mean=MEAN, std=STD, to_rgb=True)
    out = preprocessor(batch, True)["inputs"]
    expected = (batch["inputs"][:, [2, 1, 0]].float() - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None,
                                                                                                                None]
    assert out.dtype == torch.float32 and torch.allclose(out, expected)


def test_seeded_loaders_repeat_their_batches(photos):
    """Two loaders built as the Runner builds them (2 workers, seeded by mmengine's worker_init_fn) with the same seed
    give the same batches; another seed other crops."""
    root = Path(photos[0]).parents[2]

    def epoch(seed: int) -> list[torch.Tensor]:
        return [b["inputs"] for b in Runner.build_dataloader(loader_cfg(root, "fast", workers=2), seed=seed)]

    first, again, other = epoch(0), epoch(0), epoch(1)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))


# --- the nvjpeg path, on the CPU ----------------------------------------------------------------------------------
def test_device_decoding_matches_the_cpu_pipeline(photos, odd_files):
    """The nvjpeg path (bytes + crop box in the workers, decode + crop + resize + flip in the data preprocessor)
    against the CPU pipeline at full resolution, same seeds, normalised outputs. On the CPU torchvision's and
    OpenCV's libjpeg-turbo decode identically (asserted: identical); nvjpeg's IDCT on a GPU may differ by a grey
    level. CMYK and PNG files are decoded by the worker; EXIF-rotated ones are oriented on the device."""
    paths = photos[:6] + [odd_files[k] for k in ("cmyk", "grey", "rgba_png", "exif6", "exif3")]
    device_steps = [DecodeRandomResizedCrop(**CROP, decode="device"), DeferredRandomFlip(prob=0.5),
                    PackEncodedInputs()]
    cpu_steps = [DecodeRandomResizedCrop(**CROP, dct_headroom=None), RandomFlip(prob=0.5), PackInputs()]
    samples = {"device": [], "cpu": []}
    for name, steps in (("device", device_steps), ("cpu", cpu_steps)):
        for index, path in enumerate(paths):
            np.random.seed(index)
            results = {"img_path": path}
            for step in steps:
                results = step(results)
            samples[name].append(results)
    assert [s["inputs"].ndim for s in samples["device"]] == [1] * 6 + [3, 1, 3, 1, 1]  # CMYK, PNG: pixels
    packed = collate_encoded(samples["device"])  # one tensor per batch, as a worker hands it over
    assert packed["inputs"]["packed"].ndim == 1 and all(
        torch.equal(a, b) for a, b in zip(unpack(packed["inputs"]), pseudo_collate(samples["device"])["inputs"],
                                          strict=True))
    on_device = NvJpegDataPreprocessor(mean=MEAN, std=STD, to_rgb=True)(packed, True)
    on_cpu = SelfSupDataPreprocessor(mean=MEAN, std=STD, to_rgb=True)(default_collate(samples["cpu"]), True)
    assert on_device["inputs"].shape == (len(paths), 3, 224, 224)
    torch.testing.assert_close(on_device["inputs"], on_cpu["inputs"], rtol=0, atol=0)


def test_device_decoding_names_a_file_it_cannot_decode(photos, tmp_path):
    """A JPEG whose header parses but whose data is garbage reaches the device; the error names that file."""
    data = Path(photos[0]).read_bytes()
    bad = tmp_path / "bad.JPEG"
    bad.write_bytes(data[:700] + np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    steps = [DecodeRandomResizedCrop(**CROP, decode="device"), DeferredRandomFlip(prob=0.5),
             PackEncodedInputs()]
    samples = []
    for path in (photos[0], str(bad)):
        results = {"img_path": path}
        for step in steps:
            results = step(results)
        samples.append(results)
    with pytest.raises(CorruptImageError, match=r"cannot decode training image\(s\) \['.*bad\.JPEG'\]"):
        NvJpegDataPreprocessor(mean=MEAN, std=STD, to_rgb=True)(collate_encoded(samples), True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_nvjpeg_without_cuda_is_a_clear_error():
    cfg = Config.fromfile(str(REPO / "configs" / "mae" / "vitb_800e.py"))
    cfg.merge_from_dict({"pipeline_impl": "nvjpeg"})
    with pytest.raises(ValueError, match="'nvjpeg' decodes the JPEGs on a CUDA GPU.*pipeline_impl='fast'"):
        apply_pipeline_impl(cfg)


# --- unreadable files ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("decode", ["cpu", "device"])
def test_unreadable_files_fail_or_are_skipped_like_checked_load_image(photos, tmp_path, decode):
    root = tmp_path / "root"
    for index, path in enumerate(photos[:6]):
        (root / "train" / "a").mkdir(parents=True, exist_ok=True)
        (root / "train" / "a" / f"{index}.JPEG").write_bytes(Path(path).read_bytes())
    (root / "train" / "a" / "zz_garbage.JPEG").write_bytes(np.random.default_rng(1).bytes(3000))
    (root / "train" / "a" / "zz_empty.JPEG").write_bytes(b"")

    def dataset(**args: object) -> ImageNet:
        return ImageNet(data_root=str(root), split="train", metainfo=dict(classes=["a"]),
                        pipeline=[dict(type=DecodeRandomResizedCrop, **CROP, decode=decode, **args)])

    strict = dataset()
    bad = next(i for i in range(len(strict)) if "zz_garbage" in strict.get_data_info(i)["img_path"])
    with pytest.raises(CorruptImageError, match=r"cannot read training image '.*zz_garbage\.JPEG'.*"
                                                r"on_corrupt='skip' in the DecodeRandomResizedCrop step"):
        strict[bad]
    lenient = dataset(on_corrupt="skip")
    loader = torch.utils.data.DataLoader(lenient, batch_size=4, num_workers=2, collate_fn=lambda batch: batch)
    samples = [s for batch in loader for s in batch]
    assert len(samples) == 8 and all("zz_" not in s["img_path"] for s in samples)
    assert lenient.pipeline.transforms[0].num_skipped >= 2  # counted across both workers
    with pytest.raises(CorruptImageError, match="more than 1 unreadable training images"):
        limited = dataset(on_corrupt="skip", max_skipped=1)
        [limited[i] for i in range(len(limited))]


@pytest.mark.parametrize("impl", ["fast", "mmpretrain"])  # DecodeRandomResizedCrop, CheckedLoadImage
def test_the_unreadable_file_error_names_the_override_that_skips_it(photos, tmp_path, impl):
    """The key in the message is the one ``--cfg-options`` must edit (``pipelines.<impl>.pipeline``: a direct edit of
    the dataset's pipeline is refused), and setting it makes the same dataset skip the file."""
    root = tmp_path / "root"
    (root / "train" / "a").mkdir(parents=True)
    for index, path in enumerate(photos[:3]):
        (root / "train" / "a" / f"{index}.JPEG").write_bytes(Path(path).read_bytes())
    (root / "train" / "a" / "zz_garbage.JPEG").write_bytes(np.random.default_rng(1).bytes(3000))

    def dataset(*overrides: str) -> ImageNet:
        cfg = Config.fromfile(str(REPO / "configs" / "mae" / "vitb_800e.py"))
        cfg.merge_from_dict(dict(option.split("=") for option in (f"pipeline_impl={impl}", *overrides)))
        apply_pipeline_impl(cfg)
        apply_pipeline_impl(cfg)  # a prepared config (the work dir's copy) is accepted again
        return ImageNet(data_root=str(root), split="train", metainfo=dict(classes=["a"]),
                        pipeline=cfg.train_dataloader.dataset.pipeline)

    strict = dataset()
    bad = next(i for i in range(len(strict)) if "zz_garbage" in strict.get_data_info(i)["img_path"])
    override = f"pipelines.{impl}.pipeline.0.on_corrupt=skip"
    with pytest.raises(CorruptImageError, match=r"cannot read training image .*zz_garbage\.JPEG") as error:
        strict[bad]
    assert str(error.value).endswith(f"skip unreadable images: --cfg-options {override}")
    lenient = dataset(override)
    assert "zz_garbage" not in lenient[bad]["data_samples"].img_path
    assert lenient.pipeline.transforms[0].num_skipped == 1


# --- the config switch --------------------------------------------------------------------------------------------
def test_fast_is_the_default_and_overrides_switch_pipeline_collate_and_preprocessor():
    cfg = Config.fromfile(str(REPO / "configs" / "bootmae" / "vitb_800e.py"))  # BootMAE: its own mean and std
    assert cfg.pipeline_impl == "fast" and cfg.train_dataloader.dataset.pipeline[0].type is DecodeRandomResizedCrop
    cfg.merge_from_dict({"pipeline_impl": "mmpretrain"})
    apply_pipeline_impl(cfg)
    assert [s.type.__name__ for s in cfg.train_dataloader.dataset.pipeline] == [
        "CheckedLoadImage", "RandomResizedCrop", "RandomFlip", "PackInputs"]
    assert cfg.model.data_preprocessor.type is SelfSupDataPreprocessor
    select_pipeline(cfg, "nvjpeg")
    assert cfg.train_dataloader.collate_fn.type is collate_encoded
    assert cfg.model.data_preprocessor.type is NvJpegDataPreprocessor
    assert cfg.model.data_preprocessor.mean == [127.5, 127.5, 127.5]  # the arguments stay


def test_a_step_is_edited_in_its_pipeline_not_in_the_dataset():
    cfg = Config.fromfile(str(REPO / "configs" / "mae" / "vitb_800e.py"))
    cfg.merge_from_dict({"pipelines.fast.pipeline.0.scale": 192})
    apply_pipeline_impl(cfg)
    assert cfg.train_dataloader.dataset.pipeline[0].scale == 192
    cfg = Config.fromfile(str(REPO / "configs" / "mae" / "vitb_800e.py"))
    cfg.merge_from_dict({"train_dataloader.dataset.pipeline.0.scale": 192})
    with pytest.raises(ValueError, match="change pipelines.fast.pipeline instead"):
        apply_pipeline_impl(cfg)
    cfg.merge_from_dict({"pipeline_impl": "slow"})
    with pytest.raises(ValueError, match="pipeline_impl='slow' is not one of the config's pipelines: fast, mmpretrain"):
        apply_pipeline_impl(cfg)


def test_loader_workers_follow_the_cores_of_each_process(monkeypatch):
    cores = len(os.sched_getaffinity(0))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert default_workers() == max(1, min(16, cores - 1))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(cores))  # as many processes as cores: one worker each
    assert default_workers() == 1
    loader = {"num_workers": 0, "persistent_workers": True, "prefetch_factor": 2}
    resolve_workers(loader)  # torch refuses both without workers
    assert loader == {"num_workers": 0}
    loader = {"num_workers": "auto", "persistent_workers": True}
    resolve_workers(loader)
    assert loader["num_workers"] == 1 and loader["persistent_workers"]


# --- whole training runs ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("impl", ["fast", "mmpretrain", "nvjpeg"])
def test_a_runner_trains_mae_on_imagenet_layout_with_each_pipeline(photos, tmp_path, impl):
    """The tiny MAE with the ImageNet config's data part (mmpretrain's ImageNet dataset, its pipelines at 32 px) on
    JPEG files in ImageNet's folders, prepared as tools/train.py prepares it; the nvjpeg path runs its CPU decoder
    (installed by hand: apply_pipeline_impl refuses nvjpeg without CUDA)."""
    cfg = Config.fromfile(str(REPO / "configs" / "mae" / "tiny_cpu.py"))
    data = Config.fromfile(str(REPO / "configs" / "_base_" / "datasets" / "imagenet_pretrain.py"))
    for choice in data.pipelines.values():
        next(step for step in choice.pipeline if "crop_ratio_range" in step).scale = 32
    root = Path(photos[0]).parents[2]
    data.train_dataloader.update(batch_size=4, num_workers=0)
    data.train_dataloader.dataset.update(data_root=str(root), indices=8,
                                         metainfo=dict(classes=sorted(p.name for p in (root / "train").iterdir())))
    cfg.merge_from_dict({"pipeline_impl": impl, "pipelines": data.pipelines.to_dict(),
                         "train_pipeline": data.train_pipeline, "train_dataloader": data.train_dataloader.to_dict(),
                         "train_cfg.max_epochs": 1,
                         "work_dir": str(tmp_path)})
    cfg.pop("generate_shapes")
    if impl == "nvjpeg":
        select_pipeline(cfg, impl)
        cfg.pipeline_impl = None
    runner = Runner.from_cfg(prepare_config(cfg))
    runner.train()
    assert runner.iter == 2 and isinstance(runner.train_dataloader.dataset, ImageNet)
    first = type(runner.train_dataloader.dataset.pipeline.transforms[0]).__name__
    assert first == {"fast": "DecodeRandomResizedCrop", "mmpretrain": "CheckedLoadImage",
                     "nvjpeg": "DecodeRandomResizedCrop"}[impl]
    assert type(runner.model.data_preprocessor) is (NvJpegDataPreprocessor if impl == "nvjpeg" else
                                                    SelfSupDataPreprocessor)
    assert (tmp_path / "vis" / "reconstruction_epoch_1.png").is_file()  # the vis hook went through the same path
