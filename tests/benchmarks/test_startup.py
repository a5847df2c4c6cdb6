"""benchmarks/startup.py runs every command once and writes well-formed results (no timing is checked)."""

from __future__ import annotations

import json

from benchmarks import startup


def test_startup_benchmark_runs_each_command_and_reports_ratios(tmp_path) -> None:
    out = tmp_path / "startup.json"
    results = startup.main(["--repeats", "1", "--warmup", "0", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(results))
    commands = results["commands"]
    assert list(commands) == list(startup.COMMANDS)  # the typo command exited 1 (timed() checks the exit code)
    assert commands["import torch"]["x_import_torch"] == 1.0
    assert all(r["wall_s"] > 0 and len(r["runs"]) == 1 for r in commands.values())
    assert "| `config typo (model.type=MAEE)` |" in startup.report(results)
