"""tools/device_check.sh and its companions: what the GPU machine is sent (tools/prepare_device_wheels.sh's wheels
cover every requirement its image lacks), what the check runs there (every tiny config in fp32 and bf16, the tiny
downstream runs, paper-size throughput with and without torch.compile), how it keeps to its budget (each step in its
own process group, killed at its limit), and the CPU twin end to end, so the script cannot rot."""

import argparse
import importlib.metadata as metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from mim_zoo.engine import env
from mim_zoo.engine.catalogue import load_catalogue

REPO = Path(__file__).resolve().parents[1]

# The nvidia-h200 image's Python packages, as .library/device/KINDS.md lists them (read 2026-11-17), those that the
# carried wheels and mim_zoo require (tools/prepare_device_wheels.sh carries every other one).
IMAGE = {"click", "einops", "huggingface-hub", "markdown", "matplotlib", "numpy", "opencv-python-headless",
         "packaging", "pillow", "pyyaml", "regex", "rich", "safetensors", "scipy", "six", "tensorboard", "torch",
         "torchvision", "tqdm", "zipp"}
PROVIDED_BY = {"opencv-python": "opencv-python-headless"}  # the same cv2 module
PYTHON_312 = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
              "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
              "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}


def load_device_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("device_check_under_test", REPO / "tools" / "device_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def shell_array(name: str) -> list[str]:
    """The names in ``NAME=(...)`` of tools/prepare_device_wheels.sh."""
    text = (REPO / "tools" / "prepare_device_wheels.sh").read_text()
    match = re.search(rf"^{name}=\(([^)]*)\)", text, flags=re.MULTILINE)
    assert match, f"tools/prepare_device_wheels.sh has no {name}=(...)"
    return match.group(1).split()


def carried() -> set[str]:
    names = {*shell_array("PURE"), *shell_array("BINARY"), *shell_array("OPENMMLAB"), "mmcv"}
    if "turbojpeg" in env.stack_pins():  # carried at the pin file's version where the pin file lists it
        names.add("turbojpeg")
    return {canonicalize_name(n) for n in names}


def needed(requirements: list[str]) -> set[str]:
    """The distributions ``requirements`` need under Python 3.12 on Linux, extras left out."""
    names = set()
    for line in requirements:
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate(PYTHON_312):
            names.add(canonicalize_name(PROVIDED_BY.get(requirement.name, requirement.name)))
    return names


def test_the_carried_wheels_and_the_image_hold_every_requirement():
    """Each carried distribution's requirements (this venv's metadata: the prepared wheels are its versions) and
    mim_zoo's own are carried or on the image: `pip install --no-deps` there leaves nothing out."""
    have = carried() | {canonicalize_name(n) for n in IMAGE}
    missing = {}
    for name in sorted(carried() - {"turbojpeg"}):
        gaps = needed(metadata.requires(name) or []) - have
        if gaps:
            missing[name] = sorted(gaps)
    pins = [p.requirement for p in env.stack_pins().values()]
    gaps = needed([str(r) for r in pins]) - have
    if gaps:
        missing["mim_zoo"] = sorted(gaps)
    assert not missing, f"requirements neither carried in .whl/ nor on the GPU image: {missing}"


def test_the_wheels_are_those_of_the_tested_stack():
    """The OpenMMLab wheels are carried at the pin file's tested versions (``install.sh --print-pins``)."""
    pins = env.stack_pins()
    for name in shell_array("OPENMMLAB"):
        assert pins[name].tested, f"{name} has no tested version in mim_zoo/requirements.txt"
    printed = subprocess.run(["bash", str(REPO / "tools" / "install.sh"), "--print-pins"], capture_output=True,
                             text=True, check=True).stdout.split()
    for name in shell_array("OPENMMLAB"):
        assert f"{name}=={pins[name].tested}" in printed


def cuda_plan(tmp_path: Path, official_mae: str | None = "/carried/official_mae") -> dict:
    check = load_device_check()
    args = check.parse_args(["run", "--device", "cuda", "--out", str(tmp_path / "out")])
    args.official_mae = official_mae
    return {step.name: step for step in check.plan(args, tmp_path / "work")}, check


def test_the_gpu_plan_runs_what_issue_12_asks(tmp_path):
    steps, check = cuda_plan(tmp_path)
    tiny = {str(p) for p in load_catalogue(REPO).configs(scale="tiny", combos=True)}
    for precision in ("fp32", "bf16"):
        argv = steps[f"train_{precision}"].argv
        assert steps[f"train_{precision}"].skip is None
        assert tiny <= set(argv), f"train_{precision} leaves out {sorted(tiny - set(argv))}"
        assert argv[argv.index("--precision") + 1] == precision
    assert check.PRECISIONS["bf16"] == (["--amp"], {"optim_wrapper.dtype": "bfloat16"})
    downstream = steps["downstream_vit"]
    assert downstream.needs == [tmp_path / "work" / "train" / "fp32" / "mae" / "last_checkpoint"]

    def flags(name: str) -> dict[str, str]:
        argv = steps[name].argv
        return {a: (argv[i + 1] if i + 1 < len(argv) and not argv[i + 1].startswith("--") else "")
                for i, a in enumerate(argv) if a.startswith("--")}

    eager = flags("throughput")
    assert eager["--device"] == "cuda" and eager["--dtypes"] == "bf16" and "--tiny" not in eager
    assert "--compile" not in eager and eager["--official-mae"] == "/carried/official_mae"
    assert "--algos" not in eager  # the catalogue's algorithms, all four, and the default peer mmpretrain
    for group in check.COMPILE_GROUPS:
        compiled = flags(f"compile_{group}")
        assert "--compile" in compiled and compiled["--algos"] == group and "--tiny" not in compiled
        assert "TORCH_COMPILE_DISABLE" not in steps[f"compile_{group}"].env
    assert flags("compile_MAE")["--peers"] == "mmpretrain" and "--official-mae" in flags("compile_MAE")
    assert sorted(check.COMPILE_GROUPS) == sorted(load_catalogue(REPO).algorithms())
    order = list(steps)
    required = ["env", "train_fp32", "train_bf16", "downstream_vit", "throughput",
                *(f"compile_{g}" for g in check.COMPILE_GROUPS)]
    extras = ["pipeline", "fsdp", "train_fp16", "downstream_mixmim"]
    assert max(order.index(s) for s in required) < min(order.index(s) for s in extras)


def test_without_the_official_mae_the_plan_times_mmpretrains_peer_alone(tmp_path):
    steps, _ = cuda_plan(tmp_path, official_mae=None)
    assert "--official-mae" not in steps["throughput"].argv and "--official-mae" not in steps["compile_MAE"].argv


def sleeper(check: ModuleType, name: str, seconds: float, timeout: float, child: Path | None = None):
    """A step that sleeps; with ``child``, it first starts a process that writes ``child`` if it outlives the step."""
    code = f"import time; time.sleep({seconds})"
    if child is not None:
        script = child.with_suffix(".py")
        script.write_text(f"import time\ntime.sleep({seconds})\nopen({str(child)!r}, 'w').write('alive')\n")
        code = f"import subprocess, sys; subprocess.Popen([sys.executable, {str(script)!r}]); {code}"
    return check.Step(name, [sys.executable, "-c", code], estimate=1, timeout=timeout)


def test_a_step_is_killed_at_its_limit_with_its_children_and_later_steps_get_what_is_left(tmp_path, monkeypatch):
    check = load_device_check()
    monkeypatch.setattr(check, "MIN_STEP_S", 1.0)
    monkeypatch.setattr(check, "PACKING_S", 0.0)
    grandchild = tmp_path / "grandchild_survived"
    steps = [check.Step("quick", [sys.executable, "-c", "print('done')"], estimate=1, timeout=30),
             sleeper(check, "hangs", 4, timeout=2, child=grandchild),
             check.Step("fails", [sys.executable, "-c", "raise SystemExit('broken on purpose')"], 1, 30),
             sleeper(check, "over_budget", 60, timeout=30),
             sleeper(check, "nothing_left", 60, timeout=30)]
    start = time.monotonic()
    outcomes = {o.name: o for o in check.run_steps(steps, tmp_path, budget=5.0, only=None)}
    assert time.monotonic() - start < 10
    assert outcomes["quick"].status == "ok"
    assert outcomes["hangs"].status == "timeout" and outcomes["hangs"].limit == 2
    assert outcomes["fails"].status == "failed" and "broken on purpose" in outcomes["fails"].result
    assert outcomes["over_budget"].status == "timeout" and outcomes["over_budget"].limit < 3.5
    assert outcomes["nothing_left"].status == "skipped" and "out of budget" in outcomes["nothing_left"].result
    time.sleep(4)  # the grandchild's sleep is over: it would have written its file by now
    assert not grandchild.exists(), "the killed step's child process outlived it"
    assert (tmp_path / "logs" / "hangs.log").read_text().rstrip().endswith("killed after 2 s")


def test_a_rerun_replaces_its_steps_in_the_last_summary(tmp_path):
    check = load_device_check()
    first = [check.Outcome("env", "ok", 1.0, 60, "fine"), check.Outcome("compile_MAE", "timeout", 99, 100, "slow")]
    (tmp_path / "summary.json").write_text(json.dumps({"outcomes": [o.__dict__ for o in first]}))
    again = [check.Outcome("compile_MAE", "ok", 50.0, 100, "1000 img/s")]
    merged = check.merged(tmp_path / "summary.json", again)
    assert [(o.name, o.status) for o in merged] == [("env", "ok"), ("compile_MAE", "ok")]


def throughput_report(path: Path, subjects: dict[str, tuple[dict, float]]) -> Path:
    """A ``benchmarks/throughput.py`` JSON report: ``{name: (info, img/s)}`` at bf16."""
    report = {"subjects": {name: {"info": info, "flops_per_image": {"bf16": 59e9}, "memory": None, "dtypes": {
        "bf16": {"summary": {"img_per_s": {"median": rate}, "utilisation": {"median": 0.5}}}}}
        for name, (info, rate) in subjects.items()}}
    path.write_text(json.dumps(report))
    return path


@pytest.mark.parametrize("layout", ["every subject compiled", "compiled twins"])
def test_the_throughput_table_puts_compiled_rates_beside_their_eager_subject(tmp_path, layout):
    """Both ways ``--compile`` reports: every subject compiled under its own name, or a ``[compile=default]`` twin
    beside an eager original that the compile step times again (that eager rate must not read as compiled)."""
    check = load_device_check()
    eager = throughput_report(tmp_path / "eager.json", {"MAE": ({}, 100.0), "MAE (mmpretrain)": ({}, 90.0)})
    if layout == "every subject compiled":
        compiled = {"MAE": ({"compiled": True}, 150.0), "MAE (mmpretrain)": ({"compiled": True}, 120.0)}
    else:
        compiled = {"MAE": ({}, 101.0), "MAE [compile=default]": ({"compile": "default"}, 150.0),
                    "MAE (mmpretrain)": ({}, 91.0)}
    compiled_path = throughput_report(tmp_path / "compiled.json", compiled)
    outcomes = [check.Outcome("throughput", "ok", 1, 2, "", check.throughput_result(eager)[1]),
                check.Outcome("compile_MAE", "ok", 1, 2, "", check.throughput_result(compiled_path)[1])]
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in
            check.throughput_table(outcomes).splitlines()[2:]}
    assert set(rows) == {"MAE bf16", "MAE (mmpretrain) bf16"}
    assert rows["MAE bf16"][2:4] == ["100.0", "150.0"]
    peer_compiled = "120.0" if layout == "every subject compiled" else "—"
    assert rows["MAE (mmpretrain) bf16"][2:4] == ["90.0", peer_compiled]


@pytest.mark.slow
def test_the_cpu_twin_runs_every_step_it_can(tmp_path):
    """``tools/device_check.sh --cpu``: the script, its steps' commands and its summary, on this machine."""
    out, work = tmp_path / "out", tmp_path / "work"
    proc = subprocess.run(["bash", str(REPO / "tools" / "device_check.sh"), "--cpu", "--out", str(out),
                           "--work-dir", str(work)], cwd=REPO, capture_output=True, text=True, timeout=1500,
                          env={**os.environ, "PYTHON": sys.executable})
    assert sorted(p.name for p in out.iterdir()) == ["logs.tar.gz", "summary.json", "summary.md"], proc.stderr
    outcomes = {o["name"]: o for o in json.loads((out / "summary.json").read_text())["outcomes"]}
    skipped = {"train_bf16", "train_fp16", "fsdp", "downstream_mixmim"}  # need CUDA, or repeat downstream_vit
    bad = {n: o["result"] for n, o in outcomes.items() if o["status"] != ("skipped" if n in skipped else "ok")}
    assert not bad, f"{bad}\n{proc.stdout[-3000:]}"
    assert proc.returncode == 0
    assert outcomes["train_fp32"]["result"] == "2/2 runs ok"
    assert set(outcomes["downstream_vit"]["data"]) == {"ade20k_miou", "coco_box_ap", "coco_mask_ap"}
    assert {"MAE fp32", "MAE (mmpretrain) fp32"} <= set(outcomes["throughput"]["data"])
    summary = (out / "summary.md").read_text()
    assert "## Tiny runs" in summary and "## Training cost" in summary and "## Steps" in summary
    with tarfile.open(out / "logs.tar.gz") as tar:
        names = set(tar.getnames())
    assert {f"logs/{n}.log" for n, o in outcomes.items() if o["status"] != "skipped"} <= names
    assert not any(n.endswith(".pth") for n in names)


def test_the_shell_script_refuses_a_missing_wheel_folder(tmp_path):
    """``--wheels`` in a checkout without .whl/ wheels: one line naming the companion script, before any step."""
    (tmp_path / "tools").mkdir()
    shutil.copy(REPO / "tools" / "device_check.sh", tmp_path / "tools")
    proc = subprocess.run(["bash", str(tmp_path / "tools" / "device_check.sh"), "--wheels"], capture_output=True,
                          text=True, env={"PATH": os.environ["PATH"], "PYTHON": sys.executable})
    assert proc.returncode == 1 and "bash tools/prepare_device_wheels.sh" in proc.stderr, proc.stderr


def test_parse_args_defaults_to_out(monkeypatch):
    monkeypatch.setenv("OUT", "/somewhere/out")
    check = load_device_check()
    assert check.parse_args(["run"]).out == "/somewhere/out"
    assert isinstance(check.parse_args(["run", "--device", "cpu"]), argparse.Namespace)
