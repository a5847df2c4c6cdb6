"""Every mim_zoo hook (registered in :data:`mim_zoo.engine.registry.HOOKS`)."""

from .evidence import RunEvidenceHook
from .metrics import RecordMetricsHook
from .monitors import RepresentationMonitorHook
from .preflight import CheckpointCompatHook, PreflightHook
from .reliability import AtomicCheckpointHook, NonFiniteLossHook, RNGStateHook
from .schedule import MIMScheduleHook
from .visualization import LossCurveHook, ReconstructionVisHook

__all__ = ["AtomicCheckpointHook", "CheckpointCompatHook", "LossCurveHook", "MIMScheduleHook", "NonFiniteLossHook",
           "PreflightHook", "RNGStateHook", "ReconstructionVisHook", "RecordMetricsHook",
           "RepresentationMonitorHook", "RunEvidenceHook"]
