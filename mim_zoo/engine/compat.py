"""Every compatibility fix mim_zoo needs for modern torch, in one place. ``apply()`` runs once at ``import mim_zoo``.

Each fix names the upstream problem and is covered by ``tests/test_compat.py``.
"""

from __future__ import annotations

import importlib.metadata as metadata
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

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
    (plain mmengine) still fails, and :func:`load_trusted` reads such a file you trust. Checkpoints written since
    :func:`plain_message_hub` hold no ``HistoryBuffer`` at all; this allow-list reads the ones written before it.
    """
    import numpy as np
    from mmengine.logging import HistoryBuffer

    HistoryBuffer.__reduce__ = _reduce_history_buffer
    multiarray = numpy_multiarray()
    allowed: list = [HistoryBuffer, np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar]
    allowed += [type(np.dtype(t)) for t in ("float64", "float32", "float16", "int64", "int32", "bool", "uint8")]
    torch.serialization.add_safe_globals(allowed)


def numpy_multiarray() -> ModuleType:
    """The module whose ``_reconstruct`` and ``scalar`` numpy's pickles name: ``numpy._core.multiarray`` in numpy 2
    (where ``numpy.core`` is a shim that warns: numpy/numpy#24634), ``numpy.core.multiarray`` before."""
    import numpy as np

    major = int(np.__version__.split(".")[0])
    return importlib.import_module("numpy._core.multiarray" if major >= 2 else "numpy.core.multiarray")


_BUFFER_KEYS = frozenset({"log_history", "count_history", "max_length"})  # a HistoryBuffer in plain types


def _plain_value(value: object) -> object:
    """numpy scalars and arrays of the message hub's runtime info as python values (``eta`` is a numpy float)."""
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def plain_message_hub() -> None:
    """Store mmengine's message hub in checkpoints as plain python types, so that *any* torch reads them with
    ``torch.load(path, weights_only=True)``, without importing mim_zoo first.

    Upstream problem: mmengine 0.10.7 checkpoints ``MessageHub.state_dict()``, whose ``log_scalars`` are
    ``HistoryBuffer`` objects (numpy arrays inside) and whose runtime info holds numpy scalars (``eta``). Even with
    :func:`allow_mmengine_checkpoints`, those pickle as globals that a plain ``torch.load(weights_only=True)``
    refuses (``Unsupported global: mmengine.logging.history_buffer.HistoryBuffer``). Fix: ``state_dict`` stores each
    buffer as ``{log_history: [...], count_history: [...], max_length: n}`` and numpy scalars (arrays) of the runtime
    info as python numbers (lists); ``load_state_dict`` rebuilds the buffers from that form (and still takes
    ``HistoryBuffer`` objects, as checkpoints written before this fix hold). The buffers' values round-trip exactly
    (float64 -> python float -> float64); resume stays bit-exact (``tests/test_resume.py``).
    """
    from mmengine.logging import HistoryBuffer, MessageHub

    if getattr(MessageHub.state_dict, "_mim_zoo_plain", False):
        return
    upstream_state_dict, upstream_load = MessageHub.state_dict, MessageHub.load_state_dict

    def state_dict(self: MessageHub) -> dict:
        state = upstream_state_dict(self)
        state["log_scalars"] = {
            key: dict(log_history=buffer._log_history.tolist(), count_history=buffer._count_history.tolist(),
                      max_length=int(buffer.max_length))
            for key, buffer in state["log_scalars"].items()}
        state["runtime_info"] = {key: _plain_value(value) for key, value in state["runtime_info"].items()}
        return state

    def load_state_dict(self: MessageHub, state: dict | MessageHub) -> None:
        if isinstance(state, dict) and isinstance(state.get("log_scalars"), dict):
            scalars = {key: HistoryBuffer(**value) if isinstance(value, dict) and set(value) == _BUFFER_KEYS
                       else value for key, value in state["log_scalars"].items()}
            state = {**state, "log_scalars": scalars}
        upstream_load(self, state)

    state_dict._mim_zoo_plain = True  # type: ignore[attr-defined]
    MessageHub.state_dict, MessageHub.load_state_dict = state_dict, load_state_dict


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


def mmpretrain_without_multimodal() -> None:
    """Keep ``import mmpretrain`` working beside transformers: its multimodal models, which mim_zoo never uses, stay
    unimported, as mmpretrain leaves them without transformers.

    Upstream problem (mmpretrain 1.2.0): ``mmpretrain/utils/dependency.py`` sets ``WITH_MULTIMODAL`` when pycocotools
    and ``transformers>=4.28.0`` are *installed* (package metadata, nothing imported), and
    ``mmpretrain/models/multimodal/__init__.py`` then imports BLIP, BLIP-2, OFA and the others. The first,
    ``blip/language_model.py``, imports ``PreTrainedModel``, ``apply_chunking_to_forward``,
    ``find_pruneable_heads_and_indices`` and ``prune_linear_layer`` from ``transformers.modeling_utils`` in a bare
    ``try``/``except`` that sets all of them, ``PreTrainedModel`` too, to ``None`` when any is missing, and recent
    transformers no longer have the three helpers there (neither 4.57.1 nor 5.17.0, the GPU image's, has them).
    ``class BertPreTrainedModel(PreTrainedModel)`` then raises ``TypeError: NoneType takes no arguments`` and
    ``import mmpretrain.models`` fails. mmdet needs pycocotools, and GPU images ship transformers: the pair is
    common.

    Fix: before mmpretrain imports its models, its own switch is set to ``False``. mmpretrain then does what it does
    without transformers: it registers placeholders of its multimodal models, each raising an ``ImportError`` that
    names the missing extra when built, and leaves its multimodal datasets out. No import of transformers is faked
    or avoided elsewhere (mmdet's language models import it as before). Applied only when both packages are
    installed and mmpretrain's models are not imported yet: ``dependency.py`` is executed from mmpretrain's own
    file under its own name (not through ``import mmpretrain``, whose ``__init__`` imports the models), and the
    imports of ``mmpretrain`` later find it in ``sys.modules``.
    """
    if "mmpretrain.models.multimodal" in sys.modules or not _installed("transformers", "pycocotools", "mmpretrain"):
        return
    name = "mmpretrain.utils.dependency"
    module = sys.modules.get(name)
    if module is None:
        package = importlib.util.find_spec("mmpretrain")  # the top-level spec: finds, imports nothing
        path = Path(package.submodule_search_locations[0]) / "utils" / "dependency.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    module.WITH_MULTIMODAL = False


def _installed(*names: str) -> bool:
    try:
        return all(metadata.distribution(name) for name in names)
    except metadata.PackageNotFoundError:
        return False


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
    plain_message_hub()
    allow_cpu_distributed()
    mmpretrain_without_multimodal()
    _applied = True
