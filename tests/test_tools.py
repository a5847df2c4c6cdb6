"""tools/train.py end to end on every tiny CPU config, and its clear errors on bad input."""

import glob
import os
import os.path as osp
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mim_zoo.engine.reliability import checkpoint_is_complete

from .conftest import CATALOGUE, REPO

TINY_CONFIGS = CATALOGUE.configs(scale="tiny")


def train(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "tools/train.py"), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.parametrize("config", TINY_CONFIGS, ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_train_runs_each_tiny_config_to_completion(config, tmp_path):
    result = train(str(config), "--work-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    max_epochs = int(result.stdout.count("Saving checkpoint at"))
    assert max_epochs >= 1 and (tmp_path / "last_checkpoint").is_file()
    checkpoint = torch.load(tmp_path / f"epoch_{max_epochs}.pth")  # weights_only=True: mim_zoo.engine.compat
    assert checkpoint["meta"]["epoch"] == max_epochs and "state_dict" in checkpoint
    assert (tmp_path / "tiny_cpu.py").is_file()  # the resolved config beside the run
    log = next(tmp_path.glob("*/*.log")).read_text()
    assert "eta:" in log and "loss:" in log


def test_missing_config_is_a_clear_error(tmp_path):
    result = train("configs/nope/tiny_cpu.py", "--work-dir", str(tmp_path))
    assert result.returncode != 0 and "does not exist" in result.stderr


def test_missing_data_root_names_the_expected_layout(tmp_path):
    result = train("configs/mae/vitb_800e.py", "--work-dir", str(tmp_path),
                   "--cfg-options", f"train_dataloader.dataset.data_root={tmp_path}/imagenet")
    assert result.returncode != 0
    assert "training data not found" in result.stderr and "train/<class>/<image>.JPEG" in result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU message")
def test_amp_without_cuda_is_a_clear_error(tmp_path):
    result = train("configs/mae/tiny_cpu.py", "--work-dir", str(tmp_path), "--amp")
    assert result.returncode != 0 and "--amp needs a CUDA device" in result.stderr


# --- one line per failure, --debug for the traceback ----------------------------------------------------------------
CLI_TOOLS = sorted(p for p in (REPO / "tools").glob("*.py") if 'if __name__ == "__main__":' in p.read_text())


def run_tool(tool: str, *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "tools" / tool), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.parametrize("tool", CLI_TOOLS, ids=lambda p: p.name)
def test_every_tool_offers_debug(tool) -> None:
    result = run_tool(tool.name, "--help")
    assert result.returncode == 0 and "--debug" in result.stdout and "full traceback" in result.stdout


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The failure's message: exit 1, no traceback, the error on one line of stderr (stdout holds no dump)."""
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr[-2000:]
    assert errors[0].endswith("(--debug shows the traceback)")
    return errors[0]


@pytest.mark.parametrize("config, option, expected", [
    ("mae", "model.type=MAEE", "model.type: 'MAEE' is not a registered model in mim_zoo. Did you mean 'MAE'"),
    ("mae", "model.masking.ratio=1.5", "model.masking.ratio: a mask ratio must lie strictly between 0 and 1, got 1.5"),
    ("mixmae", "train_dataloader.batch_size=3", "train_dataloader.batch_size: MixMAE mixes each image with its batch "
                                                "mirror (x.flip(0)), so a batch must hold an even number of images"),
])
def test_a_refused_start_writes_nothing(tmp_path, config: str, option: str, expected: str) -> None:
    """A typo or a refused value: one line, before mmengine's Runner creates the work dir, its log and its
    environment report."""
    work_dir, config = tmp_path / "work", f"configs/{config}/tiny_cpu.py"
    result = train(config, "--work-dir", str(work_dir), "--cfg-options", option)
    assert expected in one_error_line(result)
    assert not work_dir.exists() and result.stdout == ""
    debug = train(config, "--work-dir", str(work_dir), "--debug", "--cfg-options", option)
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr
    assert not work_dir.exists()


def test_a_work_dir_that_cannot_be_created_is_one_line(tmp_path) -> None:
    (tmp_path / "a_file").write_text("")
    message = one_error_line(train("configs/mae/tiny_cpu.py", "--work-dir", str(tmp_path / "a_file" / "run")))
    assert f"cannot create the work dir '{tmp_path}/a_file/run': Not a directory" in message
    assert "choose another --work-dir" in message
    message = one_error_line(train("configs/mae/tiny_cpu.py", "--work-dir", str(tmp_path / "a_file")))
    assert f"work dir '{tmp_path}/a_file' is a file, not a directory" in message


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any folder")
def test_a_work_dir_without_permission_is_one_line(tmp_path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        message = one_error_line(train("configs/mae/tiny_cpu.py", "--work-dir", str(locked / "run")))
        assert f"cannot create the work dir '{locked}/run': Permission denied; choose another --work-dir" in message
        message = one_error_line(train("configs/mae/tiny_cpu.py", "--work-dir", str(locked)))
        assert f"work dir '{locked}' is not writable by this user; choose another --work-dir" in message
    finally:
        locked.chmod(0o700)  # so that pytest can delete it


def test_a_random_bytes_checkpoint_is_named_as_damaged(tmp_path) -> None:
    (tmp_path / "random.pth").write_bytes(np.random.default_rng(0).bytes(5000))
    message = one_error_line(run_tool("benchmark.py", str(tmp_path / "random.pth"), "--tiny", "--work-dir",
                                      str(tmp_path / "bench")))
    assert f"'{tmp_path}/random.pth' is not a usable checkpoint: it is truncated or damaged" in message
    assert "weights_only=False" not in message and "load_trusted" not in message and ".." not in message


def test_a_damaged_source_checkpoint_is_named_by_convert_checkpoint(tmp_path) -> None:
    (tmp_path / "random.pth").write_bytes(np.random.default_rng(0).bytes(5000))
    out = tmp_path / "converted.pth"
    message = one_error_line(run_tool("convert_checkpoint.py", str(tmp_path / "random.pth"), str(out), "--from", "mae"))
    assert f"'{tmp_path}/random.pth' is not a usable checkpoint: it is truncated or damaged" in message
    assert "Download or copy it again" in message and not out.exists()


def test_quickstart_stops_at_a_failed_step_in_one_line(tmp_path) -> None:
    """The failing tool's own line, then the quickstart's, naming the command; no traceback, nothing trained."""
    result = run_tool("quickstart.py", "--algos", "mixmae", "--batch-size", "3", "--epochs", "2", "--work-dir",
                      str(tmp_path / "qs"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2 and "train_dataloader.batch_size: MixMAE mixes each image" in errors[0]
    assert errors[1].startswith("error: `") and "tools/train.py configs/mixmae/tiny_cpu.py" in errors[1]
    assert errors[1].endswith("failed (exit code 1; its error is printed above)")
    assert not (tmp_path / "qs").exists()


def test_ctrl_c_stops_in_one_line_with_the_command_that_continues(tmp_path) -> None:
    """SIGINT while a checkpoint is being saved (mmengine formats the config then, and turns the interrupt into a
    SyntaxError): exit 130, one line naming the last complete checkpoint and the --resume command, checkpoints
    complete; the command continues the run."""
    work_dir = str(tmp_path)
    options = ["--cfg-options", "train_dataloader.dataset.indices=16", "train_cfg.max_epochs=3",
               "default_hooks.reconstruction_vis=None", "default_hooks.loss_curve=None"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, str(REPO / "tools/train.py"), "configs/mae/tiny_cpu.py",
                                "--work-dir", work_dir, *options], cwd=REPO, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for line in process.stdout:
        if "Saving checkpoint at 2 epochs" in line:
            process.send_signal(signal.SIGINT)
            break
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr
    (line,) = [line for line in stderr.splitlines() if line.startswith("interrupted: ")]
    assert f"the last complete checkpoint is {osp.join(work_dir, 'epoch_1.pth')}" in line
    command = shlex.split(line.split("`")[1])
    assert command[:3] == ["python", "tools/train.py", "configs/mae/tiny_cpu.py"] and command[-1] == "--resume"
    assert all(checkpoint_is_complete(p) for p in glob.glob(osp.join(work_dir, "*.pth")))
    assert not glob.glob(osp.join(work_dir, ".*.tmp"))  # no half-written file left behind
    resumed = subprocess.run([sys.executable, *command[1:]], cwd=REPO, env=env, capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Load checkpoint from" in resumed.stdout and osp.isfile(osp.join(work_dir, "epoch_3.pth"))


# --- tools/export.py --------------------------------------------------------------------------------------------
def test_export_to_timm_prints_the_call_that_loads_the_file_strictly(tmp_path) -> None:
    import timm

    work_dir = tmp_path / "run"
    assert train("configs/mae/tiny_cpu.py", "--work-dir", str(work_dir), "--cfg-options",
                 "train_dataloader.dataset.indices=16", "train_cfg.max_epochs=1",
                 "default_hooks.reconstruction_vis=None").returncode == 0
    out = tmp_path / "mae_timm.pth"
    result = run_tool("export.py", str(work_dir / "epoch_1.pth"), "--to", "timm", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("load it with: ")]
    call = line.removeprefix("load it with: ")
    assert call.startswith("timm.create_model('vit_tiny_patch16_224', pretrained=True, pretrained_cfg_overlay=")
    model = eval(call, {"timm": timm})  # the printed call builds the tiny architecture and loads the file
    saved = torch.load(out, weights_only=True)
    assert model.state_dict().keys() == saved.keys()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in saved.items())


# --- a fast start -------------------------------------------------------------------------------------------------
HEAVY = ("mmengine.runner", "mmpretrain", "mmdet", "mmseg", "timm", "torchvision", "torch._dynamo",
         "mim_zoo.core.downstream")


def imported_modules(*args: str) -> set[str]:
    """The modules ``python -X importtime ARGS`` imports (its stderr, one line per module)."""
    result = subprocess.run([sys.executable, "-X", "importtime", *args], cwd=REPO, capture_output=True, text=True,
                            timeout=600)
    return {line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}


@pytest.mark.parametrize("args", [("-c", "import mim_zoo"), ("tools/train.py", "--help"),
                                  ("tools/train.py", "configs/mae/tiny_cpu.py", "--cfg-options", "model.type=MAEE")],
                         ids=["import", "help", "typo"])
def test_import_help_and_a_typo_do_not_wait_for_the_training_stack(args) -> None:
    """What costs a multiple of `import torch` (benchmarks/startup.py): mmengine's Runner, mmpretrain (which imports
    mmdet), mmseg, mim_zoo's downstream adapters (which import all three), and timm (which imports torchvision and,
    through it, torch._dynamo)."""
    modules = imported_modules(*args)
    assert "mim_zoo" in modules
    loaded = sorted(m for m in modules if m.startswith(HEAVY))
    assert not loaded, f"python {' '.join(args)} imports {loaded[:8]}"


# --- help texts -----------------------------------------------------------------------------------------------------
def help_of(*args: str) -> dict[str, str]:
    """``--help`` of ``python ARGS`` as ``{option: its help text, lines joined}``."""
    result = subprocess.run([sys.executable, *args, "--help"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    entries: dict[str, str] = {}
    option = None
    for line in result.stdout.splitlines():
        stripped = line.strip()
        if stripped.startswith("-"):
            option = stripped.split()[0].rstrip(",")
            entries[option] = stripped
        elif option and stripped:
            entries[option] += " " + stripped
    return entries


def test_compare_options_say_what_they_set_and_their_defaults() -> None:
    entries = help_of("-m", "benchmarks.compare")
    for option, default in {"--seeds": "0,1,2", "--epochs": "12", "--batch-size": "32", "--lr": "0.004",
                            "--jobs": "2", "--out-dir": "benchmarks/results"}.items():
        text = " ".join(entries[option].split())
        assert len(text.split(")")[0]) > len(option) + 25, f"{option} has no help text: {text!r}"
        assert "(default: " in text and default in text.replace(" ", "").replace("-\n", ""), text


def test_convert_checkpoint_from_lists_the_layouts() -> None:
    text = help_of("tools/convert_checkpoint.py")["--from"]
    assert "layout of SRC, one of: mae," in text and "--list" in text
