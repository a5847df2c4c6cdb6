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
* the region decoder (TurboJPEG >= 3.0, ``decoder="turbojpeg"``) against OpenCV's whole-image decode: bit-identical
  (tolerance 0), both are libjpeg-turbo with the same IDCT and upsampling. Those tests run where the library is
  found (``$MIM_ZOO_LIBTURBOJPEG``, a conda ``libjpeg-turbo >= 3``, the system's); elsewhere they are skipped and
  the pipeline decodes with OpenCV, which every other test covers.
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
    turbojpeg,
)
from mim_zoo.engine.pipeline.decode import jpeg_needs_pillow, planar_hwc, probe_with_pillow
from mim_zoo.engine.pipeline.device import unpack
from mim_zoo.engine.pipeline.geometry import decoded_window, interpolate, stored_window
from mim_zoo.engine.transforms import CheckedLoadImage, CorruptImageError
from mim_zoo.synthetic.photos import natural_image, write_photo_folder

REPO = Path(__file__).resolve().parents[2]
CROP = dict(scale=224, crop_ratio_range=(0.2, 1.0), interpolation="bicubic")
requires_turbojpeg = pytest.mark.skipif(turbojpeg.library() is None, reason=f"no TurboJPEG >= 3.0 library: "
                                        f"{turbojpeg.HOW_TO_GET} to run the region decoder's tests")
CPU_DECODERS = ["opencv", pytest.param("turbojpeg", marks=requires_turbojpeg)]
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


@pytest.mark.parametrize("orientation", range(1, 9))
def test_stored_window_is_the_displayed_window_before_orienting(orientation):
    """Cropping the stored pixels at stored_window(w) and orienting gives the displayed image's window w (what the
    region decoder relies on), for random windows of a 7 x 11 image in every EXIF orientation."""
    stored = torch.arange(3 * 7 * 11, dtype=torch.int32).view(3, 7, 11)
    shown = orient(stored, orientation)
    rng = np.random.default_rng(orientation)
    for _ in range(50):
        top, left = (int(rng.integers(0, n)) for n in shown.shape[1:])
        window = CropBox(top, left, int(rng.integers(1, shown.shape[1] - top + 1)),
                         int(rng.integers(1, shown.shape[2] - left + 1)))
        w = stored_window(window, orientation, tuple(shown.shape[1:]))
        assert torch.equal(orient(stored[:, w.top:w.top + w.height, w.left:w.left + w.width], orientation),
                           shown[:, top:top + window.height, left:left + window.width])


def test_decoded_window_by_hand():
    """At 1/2 a box of full-resolution rows 5-17 and columns 3-10 covers reduced rows 2.5-8.5 and columns 1.5-5.5:
    whole pixels 2-8 and 1-5, clipped to the reduced image (ceil of 17 / 2 = 9 rows, 6 columns here)."""
    assert decoded_window(CropBox(5, 3, 12, 8), 2, (9, 6)) == CropBox(2, 1, 7, 5)
    assert decoded_window(CropBox(5, 3, 12, 8), 2, (8, 5)) == CropBox(2, 1, 6, 4)
    assert decoded_window(CropBox(5, 3, 12, 8), 1, (17, 11)) == CropBox(5, 3, 12, 8)


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
    with pytest.raises(ValueError, match="decoder must be one of auto, opencv, turbojpeg, got 'pillow'"):
        DecodeRandomResizedCrop(224, decoder="pillow")


def test_the_region_decoder_without_its_library_is_a_clear_error(monkeypatch, tmp_path):
    """decoder='turbojpeg' without TurboJPEG >= 3.0 names how to get it; 'auto' falls back to OpenCV; a library named
    by $MIM_ZOO_LIBTURBOJPEG that is not TurboJPEG 3 is refused loudly, naming the variable."""
    monkeypatch.setattr(turbojpeg, "library", lambda: None)
    with pytest.raises(ValueError, match="decoder='turbojpeg' needs libjpeg-turbo >= 3.0.*conda-forge libjpeg-turbo.*"
                                         "MIM_ZOO_LIBTURBOJPEG.*decoder='opencv'"):
        DecodeRandomResizedCrop(224, decoder="turbojpeg")
    assert DecodeRandomResizedCrop(224).decoder == "opencv"
    monkeypatch.undo()
    fake = tmp_path / "libturbojpeg.so.0"
    fake.write_bytes(b"not a library")
    monkeypatch.setenv(turbojpeg.LIBRARY_ENV, str(fake))
    turbojpeg.library.cache_clear()
    try:
        with pytest.raises(OSError, match=r"\$MIM_ZOO_LIBTURBOJPEG='.*libturbojpeg.so.0' is not a loadable "
                                          "TurboJPEG >= 3.0 library"):
            turbojpeg.library()
        with pytest.raises(OSError, match="TurboJPEG < 3.0"):
            turbojpeg.load_library(str(next(Path(cv2.__file__).parent.parent.glob("pillow.libs/libjpeg*"))))
    finally:
        monkeypatch.undo()
        turbojpeg.library.cache_clear()


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
@pytest.mark.parametrize("decoder", CPU_DECODERS)
@pytest.mark.parametrize("args", [{"dct_headroom": None}, {}], ids=["full-resolution", "default"])
def test_pixels_match_mmpretrains_pipeline(photos, args, decoder):
    """The same crop box and flip (same seed), the same decoder; only the resize kernel differs (see the module
    docstring). These <= 420-pixel files never decode at a reduced scale."""
    for index, path in enumerate(photos):
        got, expected = ours(path, index, decoder=decoder, **args), reference(path, index)
        assert got["data_samples"].ori_shape == expected["data_samples"].ori_shape
        assert got["data_samples"].flip == expected["data_samples"].flip
        assert_close_to_reference(got["inputs"], expected["inputs"])


@pytest.mark.parametrize("decoder", CPU_DECODERS)
@pytest.mark.parametrize("headroom, min_psnr", [(2.0, 40.0), (1.0, 30.0)])
def test_dct_scaled_decode_stays_close_to_a_full_decode(large_photo, headroom, min_psnr, decoder):
    """Crops of a 1500 x 1100 photo decoded at the scale the transform picks, against the full-resolution decode of
    the same crop box; the transform picks the largest scale that leaves the crop >= headroom x 224."""
    transform = DecodeRandomResizedCrop(**CROP, dct_headroom=headroom, decoder=decoder)
    full = DecodeRandomResizedCrop(**CROP, dct_headroom=None, decoder="opencv")
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


@pytest.mark.parametrize("decoder", CPU_DECODERS)
def test_odd_files_match_mmpretrains_pipeline(odd_files, decoder):
    """CMYK and greyscale JPEGs, RGBA and palette PNGs (no DCT scaling), EXIF-rotated JPEGs (the box is sampled on
    the displayed image, as OpenCV's IMREAD_COLOR shows it to mmpretrain): all RGB 224 x 224 like the reference."""
    for index, path in enumerate(odd_files.values()):
        got, expected = ours(path, index, decoder=decoder), reference(path, index)
        assert got["data_samples"].ori_shape == expected["data_samples"].ori_shape, path
        assert got["inputs"].shape == (3, 224, 224)
        assert_close_to_reference(got["inputs"], expected["inputs"])


def test_an_xmp_orientation_is_ignored_as_opencv_ignores_it(tmp_path):
    """A JPEG whose only orientation is XMP's tiff:Orientation: Pillow's getexif reports it, OpenCV's IMREAD_COLOR
    (the reference's decoder) does not apply it, so neither does the pipeline (it rotated such files before)."""
    xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
           b'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>')
    path = tmp_path / "xmp.JPEG"
    path.write_bytes(jpeg_bytes(natural_image(np.random.default_rng(2), 300, 400), xmp=xmp))
    assert Image.open(path).getexif().get(0x0112) == 6  # what Pillow alone would have applied
    got, expected = ours(str(path), 0), reference(str(path), 0)
    assert got["data_samples"].ori_shape == expected["data_samples"].ori_shape == (300, 400)
    assert_close_to_reference(got["inputs"], expected["inputs"])


def test_jpeg_needs_pillow_only_for_app1_segments_or_what_it_cannot_follow(odd_files):
    """The marker scan that lets a plain JPEG skip Pillow: JFIF-only files do not need it (and Pillow finds
    orientation 1 in them); EXIF or XMP (APP1), a marker stream it cannot follow, or a file cut in its headers do."""
    rgb = natural_image(np.random.default_rng(4), 64, 80)
    plain, progressive = jpeg_bytes(rgb), jpeg_bytes(rgb, progressive=True)
    assert not jpeg_needs_pillow(plain) and not jpeg_needs_pillow(progressive)
    assert probe_with_pillow(plain).orientation == 1
    assert jpeg_needs_pillow(Path(odd_files["exif6"]).read_bytes())
    assert jpeg_needs_pillow(jpeg_bytes(rgb, xmp=b"<x:xmpmeta/>"))
    assert jpeg_needs_pillow(plain[:2] + b"\x00" + plain[3:])  # not a marker where one must be
    assert jpeg_needs_pillow(plain[:40])  # cut before the image data
    assert not jpeg_needs_pillow(plain[:2] + b"\xff" + plain[2:])  # a fill byte before a marker


# --- the region decoder (TurboJPEG >= 3.0) ------------------------------------------------------------------------
def _encodings(rng: np.random.Generator) -> dict[str, bytes]:
    """The JPEG variants the region decoder meets: every common subsampling, progressive, greyscale, restart
    markers, sizes that are no multiple of the 16-pixel iMCU."""
    files = {}
    for height, width in [(375, 500), (333, 211), (97, 1003)]:
        rgb = natural_image(rng, height, width)
        for name, save in {"420": {"subsampling": 2}, "422": {"subsampling": 1}, "444": {"subsampling": 0},
                           "progressive": {"progressive": True}, "restarts": {"restart_marker_rows": 1}}.items():
            files[f"{width}x{height}-{name}"] = jpeg_bytes(rgb, **save)
        files[f"{width}x{height}-grey"] = jpeg_bytes(np.ascontiguousarray(rgb[..., 0]))
    return files


@requires_turbojpeg
def test_region_decode_is_the_full_decode_there():
    """Random windows decoded by region at every DCT scale against the same pixels of OpenCV's decode of the whole
    image at that scale (IMREAD_REDUCED_COLOR_s): bit-identical, edges and corners included."""
    rng = np.random.default_rng(0)
    flags = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
             8: cv2.IMREAD_REDUCED_COLOR_8}
    for name, data in _encodings(rng).items():
        for scale, flag in flags.items():
            full = torch.from_numpy(cv2.imdecode(np.frombuffer(data, np.uint8), flag)).permute(2, 0, 1)
            height, width = full.shape[1:]
            windows = [CropBox(0, 0, height, width), CropBox(height - 1, width - 1, 1, 1)]
            for _ in range(12):
                top, left = int(rng.integers(0, height)), int(rng.integers(0, width))
                windows.append(CropBox(top, left, int(rng.integers(1, height - top + 1)),
                                       int(rng.integers(1, width - left + 1))))
            for w in windows:
                got = turbojpeg.decoder().decode(data, w, scale)
                assert torch.equal(got, full[:, w.top:w.top + w.height, w.left:w.left + w.width]), (name, scale, w)


@requires_turbojpeg
def test_region_decoder_gives_opencvs_pixels_and_boxes(photos, large_photo, odd_files):
    """The transform with decoder='turbojpeg' against decoder='opencv', same seeds: the same boxes, DCT scales and
    pixels, bit for bit (EXIF-rotated files decoded by region through stored_window); CMYK JPEGs and PNGs go to
    OpenCV."""
    by_region, whole = (DecodeRandomResizedCrop(**CROP, decoder=d, dct_headroom=1) for d in ("turbojpeg", "opencv"))
    paths = [*photos, *odd_files.values(), *[large_photo] * 24]
    decoders, scales = [], set()
    for index, path in enumerate(paths):
        np.random.seed(index)
        got = by_region({"img_path": path})
        np.random.seed(index)
        expected = whole({"img_path": path})
        assert got["crop_box"] == expected["crop_box"] and got["dct_scale"] == expected["dct_scale"]
        np.testing.assert_array_equal(got["img"], expected["img"], err_msg=path)
        decoders.append((Path(path).stem, got["decoder"]))
        scales.add(got["dct_scale"])
    for path in photos:  # plain JPEGs: the header from libjpeg-turbo alone, as Pillow reads it
        probe, pillow = by_region._probe(Path(path).read_bytes()), probe_with_pillow(Path(path).read_bytes())
        assert probe.turbo is not None and probe[:4] == pillow[:4]
    assert {d for stem, d in decoders if stem in ("cmyk", "rgba_png", "palette_png")} == {"opencv"}
    assert {d for stem, d in decoders if stem not in ("cmyk", "rgba_png", "palette_png")} == {"turbojpeg"}
    assert scales >= {1, 2, 4}  # the large photo's crops decoded by region at reduced scales too


@requires_turbojpeg
def test_region_decoder_judges_damaged_files_as_the_reference_does(photos, tmp_path):
    """Files damaged inside the crop: cut off in the middle (the reference, CheckedLoadImage, calls it unreadable),
    noise after a valid header, a few bytes flipped. TurboJPEG warns about all of them, and OpenCV decides: the
    same verdict and the same pixels as decoder='opencv' and as the reference's decision."""
    data = Path(photos[0]).read_bytes()
    noise = np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    flipped = bytearray(data)
    flipped[900:905] = b"\x00\xff\x00\xff\x00"
    damaged = {"truncated": data[:len(data) // 2], "noise": data[:700] + noise, "flipped": bytes(flipped)}
    for name, content in damaged.items():
        path = tmp_path / f"{name}.JPEG"
        path.write_bytes(content)
        try:
            CheckedLoadImage()({"img_path": str(path)})
            readable = True
        except CorruptImageError:
            readable = False
        out = {}
        for decoder in ("turbojpeg", "opencv"):
            np.random.seed(0)
            step = DecodeRandomResizedCrop(**{**CROP, "crop_ratio_range": (1.0, 1.0)}, decoder=decoder)
            try:
                out[decoder] = step({"img_path": str(path)})
            except CorruptImageError:
                out[decoder] = None
        assert (out["turbojpeg"] is not None) == (out["opencv"] is not None) == readable, name
        if readable:
            assert out["turbojpeg"]["decoder"] == "opencv", name  # TurboJPEG warned; OpenCV decoded it
            np.testing.assert_array_equal(out["turbojpeg"]["img"], out["opencv"]["img"], err_msg=name)
    assert not CheckedLoadImage(on_corrupt="skip")({"img_path": str(tmp_path / "truncated.JPEG")})


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


def test_the_image_is_handed_over_planar_so_packing_copies_nothing(photos):
    """results["img"] is mmcv's [h, w, 3] BGR array as a view of [3, h, w] memory: PackInputs packs that memory itself
    (no copy) unless a flip reversed it; the values are the resize's."""
    pixels = torch.randint(0, 256, (1, 3, 7, 5), dtype=torch.uint8).contiguous(memory_format=torch.channels_last)[0]
    img = planar_hwc(pixels)
    assert img.shape == (7, 5, 3) and np.array_equal(img, pixels.permute(1, 2, 0).numpy())
    np.random.seed(0)
    results = DecodeRandomResizedCrop(**CROP)({"img_path": photos[0]})
    base = results["img"].transpose(2, 0, 1)
    assert base.flags.c_contiguous
    assert PackInputs()(dict(results))["inputs"].data_ptr() == base.ctypes.data
    flipped = PackInputs()(RandomFlip(prob=1.0)(dict(results)))["inputs"]
    assert torch.equal(flipped, torch.from_numpy(base[:, :, ::-1].copy()))


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
@pytest.mark.parametrize("decode, decoder", [("cpu", "opencv"), pytest.param("cpu", "turbojpeg",
                                                                             marks=requires_turbojpeg),
                                             ("device", "auto")])
def test_unreadable_files_fail_or_are_skipped_like_checked_load_image(photos, tmp_path, decode, decoder):
    root = tmp_path / "root"
    for index, path in enumerate(photos[:6]):
        (root / "train" / "a").mkdir(parents=True, exist_ok=True)
        (root / "train" / "a" / f"{index}.JPEG").write_bytes(Path(path).read_bytes())
    (root / "train" / "a" / "zz_garbage.JPEG").write_bytes(np.random.default_rng(1).bytes(3000))
    (root / "train" / "a" / "zz_empty.JPEG").write_bytes(b"")

    def dataset(**args: object) -> ImageNet:
        return ImageNet(data_root=str(root), split="train", metainfo=dict(classes=["a"]),
                        pipeline=[dict(type=DecodeRandomResizedCrop, **CROP, decode=decode, decoder=decoder,
                                       **args)])

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
    # mmengine's dataset redraws a random index after a skipped file, which may be the bad file again
    assert lenient.pipeline.transforms[0].num_skipped >= 1


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
@pytest.mark.parametrize("impl", ["fast", "mmpretrain", "nvjpeg", pytest.param("fast:turbojpeg",
                                                                                marks=requires_turbojpeg)])
def test_a_runner_trains_mae_on_imagenet_layout_with_each_pipeline(photos, tmp_path, impl):
    """The tiny MAE with the ImageNet config's data part (mmpretrain's ImageNet dataset, its pipelines at 32 px) on
    JPEG files in ImageNet's folders, prepared as tools/train.py prepares it; the nvjpeg path runs its CPU decoder
    (installed by hand: apply_pipeline_impl refuses nvjpeg without CUDA); "fast:turbojpeg" chooses the region decoder
    with --cfg-options' key."""
    impl, _, decoder = impl.partition(":")
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
    if decoder:
        cfg.merge_from_dict({"pipelines.fast.pipeline.0.decoder": decoder})
    cfg.pop("generate_shapes")
    if impl == "nvjpeg":
        select_pipeline(cfg, impl)
        cfg.pipeline_impl = None
    runner = Runner.from_cfg(prepare_config(cfg))
    runner.train()
    assert runner.iter == 2 and isinstance(runner.train_dataloader.dataset, ImageNet)
    first = runner.train_dataloader.dataset.pipeline.transforms[0]
    assert type(first).__name__ == {"fast": "DecodeRandomResizedCrop", "mmpretrain": "CheckedLoadImage",
                                    "nvjpeg": "DecodeRandomResizedCrop"}[impl]
    if decoder:
        assert first.decoder == decoder
    assert type(runner.model.data_preprocessor) is (NvJpegDataPreprocessor if impl == "nvjpeg" else
                                                    SelfSupDataPreprocessor)
    assert (tmp_path / "vis" / "reconstruction_epoch_1.png").is_file()  # the vis hook went through the same path
