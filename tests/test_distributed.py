"""Multi-process training through mmengine: 2 CPU processes (gloo) launched by torchrun.

* DDP over 2 processes equals 1 process with the same global batch (gradients and weights, within float tolerance),
  for every tiny config whose loss decomposes over samples; batch-coupled algorithms are detected and exempt.
* Masks differ across ranks and are reproducible per seed: rank r draws exactly what 1 process seeded seed+r draws.
* ``tools/dist_train.sh`` trains a tiny config end to end and its checkpoints hold the random states of both ranks;
  a 2-process run killed mid-epoch and resumed ends bit-identical to an uninterrupted one.
* ``tools/slurm_train.sh`` hands srun the documented command line.
"""

from __future__ import annotations

import os
import os.path as osp
import socket
import subprocess
import sys

import pytest
import torch
from mmengine.dataset import DefaultSampler, default_collate
from torch.utils.data import DataLoader

from mim_zoo.engine.hooks.preflight import _per_process_batches

from .helpers import dist_worker
from .helpers.training import (
    REPO,
    TRAIN,
    TRAIN_WITH_FAULTS,
    assert_same_training_state,
    load_checkpoint,
    single_thread,
    subprocess_env,
    tiny_configs,
)

pytestmark = pytest.mark.dist
CONFIGS = tiny_configs()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun(args: list[str], nproc: int = 2, timeout: float = 600) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
               f"--master_port={free_port()}", *args]
    return subprocess.run(command, cwd=REPO, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def two_process_results(tmp_path_factory) -> str:
    """One torchrun launch (2 processes) runs the equivalence worker on every tiny config."""
    out = str(tmp_path_factory.mktemp("ddp"))
    result = torchrun([osp.join(REPO, "tests", "helpers", "dist_worker.py"), out, *CONFIGS])
    assert result.returncode == 0, result.stdout[-4000:]
    return out


def couples_samples(runner) -> bool:
    """Whether the loss of a batch differs from the mean loss of its halves (the model mixes samples)."""
    model = dist_worker.unwrap(runner)
    images, masks = dist_worker.fixed_batch(model, step=0)
    inputs = model.data_preprocessor({"inputs": images, "data_samples": None}, False)["inputs"]
    model.eval()
    with torch.no_grad():
        def loss(part: slice) -> torch.Tensor:
            return sum(v for k, v in model(inputs[part], mode="loss", mask=masks[part]).items() if "loss" in k)

        half = dist_worker.GLOBAL_BATCH // 2
        full, halves = loss(slice(None)), (loss(slice(0, half)) + loss(slice(half, None))) / 2
    model.train()
    return not torch.allclose(full, halves, rtol=1e-6, atol=1e-7)  # float noise of the means: ~1e-7 relative


@pytest.mark.parametrize("config", CONFIGS)
def test_two_processes_match_one_process_with_the_same_global_batch(config, two_process_results, tmp_path) -> None:
    folder = osp.join(two_process_results, dist_worker.algo_name(config))
    with single_thread():
        runner = dist_worker.build_runner(config, str(tmp_path / "work_dir"), "none")
        if couples_samples(runner):
            pytest.skip(f"{config}: the loss couples the samples of a batch (e.g. MixMAE's batch mirror), so a "
                        "data-parallel run is not meant to equal one process with the global batch")
        dist_worker.draw_masks(runner)  # the same draws as the worker made before training
        single = dist_worker.train_steps(runner)
    ddp = torch.load(osp.join(folder, "weights.pt"), weights_only=True)
    assert ddp["world_size"] == 2 and single["world_size"] == 1
    for name, value in single["initial"].items():
        assert torch.equal(value, ddp["initial"][name]), f"{name}: the ranks did not start from the same weights"
    assert single["grads"].keys() == ddp["grads"].keys()
    for name, grad in single["grads"].items():  # DDP averages the per-process gradients
        torch.testing.assert_close(ddp["grads"][name], grad, rtol=1e-4, atol=1e-7, msg=f"gradient of {name}")
    updates = max((single["final"][k] - v).abs().max().item() for k, v in single["initial"].items())
    assert updates > 1e-3  # the steps moved the weights far more than the tolerance below
    for name, value in single["final"].items():
        # AdamW turns gradients that are float noise (~1e-11: mathematically zero, like the key biases, which
        # softmax ignores) into full steps of either sign; every entry with a real gradient must agree.
        grad = single["grads"].get(name)
        real = grad.abs() > 1e-6 if grad is not None else torch.ones_like(value, dtype=torch.bool)
        torch.testing.assert_close(ddp["final"][name][real], value[real], rtol=0, atol=1e-6,
                                   msg=f"weights of {name}")


@pytest.mark.parametrize("config", CONFIGS)
def test_masks_differ_across_ranks_and_are_reproducible_per_seed(config, two_process_results, tmp_path) -> None:
    folder = osp.join(two_process_results, dist_worker.algo_name(config))
    ranks = [torch.load(osp.join(folder, f"masks_rank{r}.pt"), weights_only=True) for r in range(2)]
    assert not torch.equal(ranks[0], ranks[1])
    with single_thread():
        for rank, masks in enumerate(ranks):  # randomness.diff_rank_seed: rank r is seeded with seed + r
            runner = dist_worker.build_runner(config, str(tmp_path / f"seed{rank}"), "none", seed=rank)
            assert torch.equal(dist_worker.draw_masks(runner), masks)


def test_dist_train_script_trains_on_two_processes(tmp_path) -> None:
    work_dir = str(tmp_path)
    result = subprocess.run(
        ["bash", "tools/dist_train.sh", "configs/mae/tiny_cpu.py", "2", "--work-dir", work_dir, "--cfg-options",
         "train_dataloader.batch_size=8", "train_cfg.max_epochs=1"],  # 2 x 8 = the config's global batch of 16
        cwd=REPO, env={**subprocess_env(), "PORT": str(free_port()), "PYTHON": sys.executable},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:]
    assert "Distributed training: True" in result.stdout
    assert "Epoch(train) [1][5/5]" in result.stdout  # 80 images (8 per class) / (2 processes x 8) = 5 iterations
    assert "recipe: 2 processes x 8 x 1 = batch 16; lr 1.5e-4 x 16/256 = 9.375e-6" in result.stdout
    checkpoint = load_checkpoint(osp.join(work_dir, "epoch_1.pth"))
    assert all(torch.isfinite(v).all() for v in checkpoint["state_dict"].values() if v.is_floating_point())
    states = checkpoint["rng_state"]
    assert states["world_size"] == 2
    assert not torch.equal(states["ranks"][0]["torch"], states["ranks"][1]["torch"])  # each rank its own stream


@pytest.mark.slow
def test_two_process_run_killed_and_resumed_equals_uninterrupted(tmp_path) -> None:
    """Each rank restores its own random state: a killed and resumed 2-process run ends bit-identical."""
    options = ["train_dataloader.batch_size=8", "train_dataloader.dataset.indices=32", "train_cfg.max_epochs=2",
               "default_hooks.reconstruction_vis=None"]

    def launch(script: str, work_dir: str, *args: str) -> subprocess.CompletedProcess:
        return torchrun([script, "configs/mae/tiny_cpu.py", "--launcher", "pytorch", "--work-dir", work_dir, *args])

    reference = launch(TRAIN, str(tmp_path / "reference"), "--cfg-options", *options)
    assert reference.returncode == 0, reference.stdout[-4000:]
    killed = launch(TRAIN_WITH_FAULTS, str(tmp_path / "run"), "--cfg-options", *options,
                    "default_hooks.fault.type=KillAtIterationHook", "default_hooks.fault.iteration=3")  # mid-epoch 2
    assert killed.returncode != 0 and osp.isfile(tmp_path / "run" / "epoch_1.pth")
    assert not osp.exists(tmp_path / "run" / "epoch_2.pth")
    resumed = launch(TRAIN, str(tmp_path / "run"), "--resume", "--cfg-options", *options)
    assert resumed.returncode == 0, resumed.stdout[-4000:]
    assert "restored the random states of 2 process(es) (epoch 1, iteration 2)" in resumed.stdout
    assert_same_training_state(load_checkpoint(str(tmp_path / "reference" / "epoch_2.pth")),
                               load_checkpoint(str(tmp_path / "run" / "epoch_2.pth")))


def test_per_process_batches_include_the_last_partial_batch() -> None:
    dataset = list(range(37))
    loader = DataLoader(dataset, batch_size=8, drop_last=False, collate_fn=default_collate,
                        sampler=DefaultSampler(dataset, shuffle=False))
    assert _per_process_batches(loader, world_size=2) == {8, 3}  # 19 samples per process (padded): 8, 8, 3
    loader = DataLoader(dataset, batch_size=8, drop_last=True, collate_fn=default_collate)
    assert _per_process_batches(loader, world_size=2) == {8}


def test_slurm_script_hands_srun_the_documented_command(tmp_path) -> None:
    """srun is not installed here: a stand-in on PATH records the arguments it receives."""
    record = tmp_path / "srun_args"
    fake = tmp_path / "srun"
    fake.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$@" > {record}\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}", "GPUS_PER_NODE": "4",
           "SRUN_ARGS": "--quotatype=reserved --time=1:00:00", "PYTHON": "python3"}
    result = subprocess.run(["bash", "tools/slurm_train.sh", "gpu", "mae_b", "configs/mae/vitb_800e.py", "8",
                             "--resume", "--work-dir", "w d"], cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert record.read_text().splitlines() == [
        "-p", "gpu", "--job-name=mae_b", "--gres=gpu:4", "--ntasks=8", "--ntasks-per-node=4", "--cpus-per-task=5",
        "--kill-on-bad-exit=1", "--quotatype=reserved", "--time=1:00:00", "python3", "-u",
        osp.join(REPO, "tools", "train.py"), "configs/mae/vitb_800e.py", "--launcher", "slurm", "--resume",
        "--work-dir", "w d"]
    usage = subprocess.run(["bash", "tools/slurm_train.sh", "gpu"], cwd=REPO, capture_output=True, text=True)
    assert usage.returncode == 2 and "usage: bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG GPUS" in usage.stderr
