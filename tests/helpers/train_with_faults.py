"""``tools/train.py`` with fault-injection hooks registered: real kills at exactly known points of a real run.

    python tests/helpers/train_with_faults.py CONFIG [train.py args] \
        --cfg-options default_hooks.fault.type=KillAtIterationHook default_hooks.fault.iteration=5

* ``KillAtIterationHook(iteration)``: SIGKILL this process at the end of the given (1-based) iteration.
* ``KillDuringSaveHook(nth, limit_bytes)``: on the ``nth`` checkpoint save, cap the file size this process may write
  (``RLIMIT_FSIZE``) with ``SIGXFSZ`` at its default action, so the kernel kills the process in the middle of writing
  the checkpoint, after ``limit_bytes`` bytes.
"""

from __future__ import annotations

import os
import os.path as osp
import resource
import signal
import sys
from typing import Any

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.join(ROOT, "tools"))

from mmengine.hooks import Hook  # noqa: E402

from mim_zoo.registry import HOOKS  # noqa: E402


@HOOKS.register_module()
class KillAtIterationHook(Hook):
    priority = "LOWEST"

    def __init__(self, iteration: int) -> None:
        self.iteration = iteration

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        if runner.iter + 1 == self.iteration:
            os.kill(os.getpid(), signal.SIGKILL)


@HOOKS.register_module()
class KillDuringSaveHook(Hook):
    priority = "LOWEST"  # after every other before_save_checkpoint: the next thing that happens is the write

    def __init__(self, nth: int, limit_bytes: int) -> None:
        self.nth, self.limit_bytes, self.saves = nth, limit_bytes, 0

    def before_save_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        self.saves += 1
        if self.saves == self.nth:
            signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # CPython ignores it by default
            resource.setrlimit(resource.RLIMIT_FSIZE, (self.limit_bytes, resource.RLIM_INFINITY))


if __name__ == "__main__":
    import train  # tools/train.py

    train.main(sys.argv[1:])
