"""How long a user waits before a tool does anything: start-up times against ``import torch``.

    python -m benchmarks.startup [--repeats 5] [--warmup 1] [--out benchmarks/results/startup.json]

Each round runs, as fresh processes from the repository root:

* ``python -c "import torch"``: the floor every tool pays;
* ``python -c "import mim_zoo"``: the stack check and the compatibility fixes (no plugin, no mmpretrain/mmdet/mmseg);
* ``python tools/train.py --help``;
* a config typo, ``python tools/train.py configs/mae/tiny_cpu.py --cfg-options model.type=MAEE``, which must fail in
  one line (exit 1) before mmengine's Runner is even imported.

The commands interleave within each round, so a change of load on a shared machine hits all of them alike. The report
gives per command the median wall time and its ratio to ``import torch`` (targets: ``--help`` and the typo error
<= 2x), and the median CPU time of the process (user + sys, ``RUSAGE_CHILDREN``), which other jobs inflate less than
wall time: ``cpu_busy`` = CPU / wall is ~1 for these single-threaded imports on a quiet machine and drops when the
cores are shared. ``python -X importtime tools/train.py ...`` shows what a slow start imports.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TYPO = ["tools/train.py", "configs/mae/tiny_cpu.py", "--cfg-options", "model.type=MAEE"]
COMMANDS: dict[str, tuple[list[str], int]] = {  # name: (python arguments, expected exit code)
    "import torch": (["-c", "import torch"], 0),
    "import mim_zoo": (["-c", "import mim_zoo"], 0),
    "tools/train.py --help": (["tools/train.py", "--help"], 0),
    "config typo (model.type=MAEE)": (TYPO, 1),
}
TARGETS = {"tools/train.py --help": 2.0, "config typo (model.type=MAEE)": 2.0}  # x import torch


def timed(args: list[str], expected: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of ``python ARGS``, run from the repository root; its exit code is checked."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != expected:
        raise RuntimeError(f"`python {' '.join(args)}` exited {done.returncode}, expected {expected}: "
                           f"{done.stderr.strip()[-500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def measure(repeats: int, warmup: int = 1) -> dict:
    """Interleaved rounds of every command (after ``warmup`` unrecorded ones: the file cache); medians, ratios."""
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in COMMANDS}
    load_before = os.getloadavg()
    for round_ in range(warmup + repeats):
        for name, (args, expected) in COMMANDS.items():
            sample = timed(args, expected)
            if round_ >= warmup:
                samples[name].append(sample)
    floor = statistics.median(wall for wall, _ in samples["import torch"])
    results = {}
    for name, runs in samples.items():
        wall = statistics.median(w for w, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        results[name] = dict(wall_s=wall, cpu_s=cpu, cpu_busy=cpu / wall, x_import_torch=wall / floor,
                             target=TARGETS.get(name), runs=[dict(wall_s=w, cpu_s=c) for w, c in runs])
    machine = dict(python=platform.python_version(), platform=platform.platform(), cpu_count=os.cpu_count(),
                   load_average_before=list(load_before), load_average_after=list(os.getloadavg()))
    return dict(repeats=repeats, machine=machine, commands=results)


def report(results: dict) -> str:
    """A markdown table of :func:`measure`'s results, with a line on the machine's load."""
    lines = ["| command | wall s (median) | x import torch | target | CPU s | cpu_busy |", "|---|---|---|---|---|---|"]
    for name, r in results["commands"].items():
        target = f"<= {r['target']:g}x" if r["target"] else ""
        lines.append(f"| `{name}` | {r['wall_s']:.2f} | {r['x_import_torch']:.2f} | {target} | {r['cpu_s']:.2f} | "
                     f"{r['cpu_busy']:.0%} |")
    machine = results["machine"]
    lines.append(f"\n{results['repeats']} interleaved rounds; {machine['cpu_count']} cores, load average "
                 f"{machine['load_average_before'][0]:.1f} before, {machine['load_average_after'][0]:.1f} after "
                 "(a load above the core count means a shared machine: compare the ratios, not the seconds).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="recorded rounds")
    parser.add_argument("--warmup", type=int, default=1, help="unrecorded rounds first (they fill the file cache)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "startup.json"), help="JSON results")
    args = parser.parse_args(argv)
    results = measure(args.repeats, args.warmup)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(report(results))
    print(f"results: {args.out}")
    return results


if __name__ == "__main__":
    main()
