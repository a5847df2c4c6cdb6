"""Data transforms of the training pipelines (mmcv/mmpretrain ``TRANSFORMS``-compatible).

* :class:`CheckedLoadImage`: mmcv's ``LoadImageFromFile`` that names an unreadable file, or skips and counts it;
* :class:`UnreadableImages`: that policy, shared with the input pipeline's one-step loader
  (:class:`mim_zoo.engine.pipeline.DecodeRandomResizedCrop`).
"""

from __future__ import annotations

import contextlib
import multiprocessing
from typing import Any

from mmcv.transforms import LoadImageFromFile
from mmengine.logging import print_log

from .reliability import RunAborted


class CorruptImageError(RunAborted):
    """A training image cannot be read or decoded."""


class UnreadableImages:
    """What a loading step does with a file it cannot read or decode: stop the run naming the file, or skip it.

    Shared by every step that reads training images (:class:`CheckedLoadImage`,
    :class:`mim_zoo.engine.pipeline.DecodeRandomResizedCrop`), so they fail and skip alike. With ``"skip"``,
    :meth:`handle` returns ``None``, so mmengine's dataset draws another sample (its ``max_refetch`` retry), and logs
    each skipped file with the running count of this process and its data workers (a counter in shared memory under
    the ``fork`` start method that ``default_runtime`` sets). More than ``max_skipped`` unreadable files abort the
    run: the data is then broken, not noisy.

    Args:
        step: the pipeline step's name, for the message (``"CheckedLoadImage"``).
        on_corrupt: ``"raise"`` (default) or ``"skip"``.
        max_skipped: most files skipped before the run aborts; ``None`` = no limit.
        config_key: where the step sits in the config (``"train_dataloader.dataset.pipeline.0"``), so that the error
            names the override that switches it to skipping; set by ``apply_pipeline_impl`` (``prepare_config``).
    """

    def __init__(self, step: str, on_corrupt: str = "raise", max_skipped: int | None = 100,
                 config_key: str | None = None) -> None:
        if on_corrupt not in ("raise", "skip"):
            raise ValueError(f"{step} on_corrupt must be 'raise' or 'skip', got {on_corrupt!r}")
        self.step, self.on_corrupt, self.max_skipped = step, on_corrupt, max_skipped
        self.config_key = config_key
        self._skipped: Any = multiprocessing.Value("q", 0)

    @property
    def num_skipped(self) -> int:
        """Files skipped so far by this process and the data workers it forked."""
        return int(self._skipped.value)

    def __getstate__(self) -> dict:  # pickled for spawned workers: a shared counter cannot travel; count locally
        state = dict(self.__dict__)
        state["_skipped"] = _LocalCounter(self.num_skipped)
        return state

    def handle(self, path: str | None, err: Exception) -> None:
        """Raise :class:`CorruptImageError` naming ``path``, or (``"skip"``) count it, log it and return ``None``."""
        reason = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        if self.on_corrupt == "raise":
            skip = (f"--cfg-options {self.config_key}.on_corrupt=skip" if self.config_key
                    else f"on_corrupt='skip' in the {self.step} step of the training pipeline")
            raise CorruptImageError(f"cannot read training image {path!r} ({reason}). Replace or delete the file, or "
                                    f"skip unreadable images: {skip}") from err
        with self._skipped.get_lock():
            self._skipped.value += 1
            count = self._skipped.value
        if self.max_skipped is not None and count > self.max_skipped:
            raise CorruptImageError(f"more than {self.max_skipped} unreadable training images (the last: {path!r}, "
                                    f"{reason}): the dataset looks broken") from err
        print_log(f"skipped unreadable image {path!r} ({reason}); {count} skipped so far", logger="current", level=30)
        return None


class CheckedLoadImage(LoadImageFromFile):
    """mmcv's ``LoadImageFromFile`` that names the file it cannot read, and can skip such files and count them
    (:class:`UnreadableImages`). Note: OpenCV (mmcv's default decoder) decodes a truncated JPEG partially without an
    error; ``imdecode_backend="pillow"`` rejects it.

    Args:
        on_corrupt: ``"raise"`` (default) or ``"skip"``.
        max_skipped: most files skipped before the run aborts; ``None`` = no limit.
        config_key: the step's key in the config, named in the error (:class:`UnreadableImages`).
        **kwargs: ``LoadImageFromFile`` arguments.
    """

    def __init__(self, on_corrupt: str = "raise", max_skipped: int | None = 100, config_key: str | None = None,
                 **kwargs: Any) -> None:
        self.unreadable = UnreadableImages(type(self).__name__, on_corrupt, max_skipped, config_key)
        super().__init__(**kwargs)

    @property
    def num_skipped(self) -> int:
        """Files skipped so far by this process and the data workers it forked."""
        return self.unreadable.num_skipped

    def transform(self, results: dict) -> dict | None:
        try:
            return super().transform(results)
        except Exception as err:  # noqa: BLE001 - any read/decode failure of this file
            return self.unreadable.handle(results.get("img_path"), err)


class _LocalCounter:
    """The part of ``multiprocessing.Value`` that :class:`UnreadableImages` uses, for spawned workers."""

    def __init__(self, value: int = 0) -> None:
        self.value = value

    def get_lock(self) -> contextlib.nullcontext:
        return contextlib.nullcontext()
