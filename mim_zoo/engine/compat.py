"""Every compatibility fix mim_zoo needs for modern torch, in one place. ``apply()`` runs once at ``import mim_zoo``.

Each fix names the upstream problem and is covered by ``tests/test_compat.py``.
"""

from __future__ import annotations

import torch

_applied = False


def _reduce_history_buffer(buffer: object) -> tuple:
    """Pickle a ``HistoryBuffer`` as its constructor call on plain lists."""
    return (type(buffer), (buffer._log_history.tolist(), buffer._count_history.tolist(), buffer.max_length))


def allow_mmengine_checkpoints() -> None:
    """Make the checkpoints mmengine 0.10.7 writes loadable by ``torch.load(weights_only=True)``.

    Upstream problem: torch >= 2.6 defaults ``torch.load`` to ``weights_only=True`` (pytorch/pytorch#137602), and
    mmengine 0.10.7's ``CheckpointLoader`` (``load_from_local``) calls ``torch.load`` without the argument. Its
    checkpoints pickle the ``message_hub``, whose ``HistoryBuffer`` s carry numpy arrays and *bound methods*
    (``getattr(HistoryBuffer, "min")``), so ``--resume`` fails with ``UnpicklingError: Weights only load failed``.
    Allow-listing ``getattr`` would defeat ``weights_only``, and switching it off would unpickle arbitrary code.

    Fix, on purpose narrow: ``HistoryBuffer`` now pickles as ``HistoryBuffer(log_list, count_list, max_length)``,
    and only ``HistoryBuffer`` plus numpy's array/scalar reconstruction (the allow-list torch documents for numpy)
    are added to torch's safe globals. Loading stays ``weights_only=True``; a checkpoint written *without* this fix
    (plain mmengine) still fails, and :func:`load_trusted` reads such a file you trust.
    """
    import numpy as np
    from mmengine.logging import HistoryBuffer

    HistoryBuffer.__reduce__ = _reduce_history_buffer
    allowed: list = [HistoryBuffer, np.ndarray, np.dtype, np.core.multiarray._reconstruct, np.core.multiarray.scalar]
    allowed += [type(np.dtype(t)) for t in ("float64", "float32", "float16", "int64", "int32", "bool", "uint8")]
    torch.serialization.add_safe_globals(allowed)


def allow_cpu_distributed() -> None:
    """Let ``--launcher pytorch`` (torchrun) start gloo process groups on machines without CUDA.

    Upstream problem: mmengine 0.10.7 ``mmengine.dist.utils._init_dist_pytorch`` calls
    ``torch.cuda.set_device(local_rank)`` before ``init_process_group``; without an NVIDIA driver that raises
    "Found no NVIDIA driver on your system", so multi-process CPU training (the distributed tests, debugging on a
    laptop) cannot start. Fix: without CUDA, skip ``set_device`` and call ``init_process_group`` as mmengine would;
    with CUDA (or a non-torch init backend) mmengine's function runs unchanged.
    """
    from mmengine.dist import utils as dist_utils

    upstream = dist_utils._init_dist_pytorch
    if getattr(upstream, "_mim_zoo_cpu_fix", False):
        return

    def init_dist_pytorch(backend: str, init_backend: str = "torch", **kwargs: object) -> None:
        if torch.cuda.is_available() or init_backend != "torch":
            return upstream(backend, init_backend=init_backend, **kwargs)
        torch.distributed.init_process_group(backend=backend, **kwargs)

    init_dist_pytorch._mim_zoo_cpu_fix = True  # type: ignore[attr-defined]
    dist_utils._init_dist_pytorch = init_dist_pytorch


def load_trusted(path: str, map_location: str | torch.device = "cpu") -> object:
    """``torch.load`` with ``weights_only=False``, for files you trust (e.g. official checkpoints that pickle
    ``argparse.Namespace``). Never call this on files from an unknown source: unpickling can run code."""
    return torch.load(path, map_location=map_location, weights_only=False)


def apply() -> None:
    """Apply every fix once (idempotent)."""
    global _applied
    if _applied:
        return
    allow_mmengine_checkpoints()
    allow_cpu_distributed()
    _applied = True
