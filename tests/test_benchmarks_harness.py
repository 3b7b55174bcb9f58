"""benchmarks/vs_pytorch.py runs each framework in a process of its own, at its defaults.

The framework workers are replaced by tests/fake_bench_worker.py (no torch, no TensorFlow):
what is checked is the parent's orchestration, not any timing.
"""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HARNESS = os.path.join(ROOT, "benchmarks", "vs_pytorch.py")
FAKE = os.path.join(ROOT, "tests", "fake_bench_worker.py")
THREADING = ("OMP_", "KMP_", "MKL_")


def run_harness(tmp_path, *extra, rounds=4):
    wrapper = tmp_path / "fake-python"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE}" "$@"\n')
    wrapper.chmod(0o755)
    log, record = tmp_path / "workers.log", tmp_path / "record.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(THREADING)}
    env["FAKE_WORKER_LOG"] = str(log)
    result = subprocess.run(
        [sys.executable, HARNESS, "--cases", "edsr-x2-fp32", "--rounds", str(rounds),
         "--warmup", "0", "--pause", "0", "--torch-python", str(wrapper),
         "--sisr-python", str(wrapper), "--json", str(record), *extra],
        env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    return result, entries, json.loads(record.read_text())


def test_two_worker_processes_no_threading_variables_interleaved(tmp_path):
    result, entries, record = run_harness(tmp_path, rounds=4)
    starts = {e["side"]: e for e in entries if e["event"] == "start"}
    assert sorted(starts) == ["sisr", "torch"]
    pids = {side: e["pid"] for side, e in starts.items()}
    assert pids["torch"] != pids["sisr"]
    assert record["parent_pid"] not in pids.values()
    assert all(e["ppid"] == record["parent_pid"] for e in starts.values())
    assert all(e["script"] == HARNESS for e in starts.values())
    # no threading variable that the parent did not have
    assert starts["torch"]["env"] == {} and starts["sisr"]["env"] == {}
    # the same input file, written once by the parent, read by both
    assert starts["torch"]["inputs"] == starts["sisr"]["inputs"]
    assert starts["torch"]["shapes"] == [[1, 128, 128, 3]]
    # interleaved: every round runs each side once, the first side alternating
    runs = [e["side"] for e in entries if e["event"] == "run"]
    assert runs == ["torch", "sisr", "sisr", "torch"] * 2
    assert [r["order"] for r in record["records"][0]["rounds"]] == [
        ["torch", "sisr"], ["sisr", "torch"]] * 2
    assert "| edsr-x2-fp32 |" in result.stdout and "PyTorch/sisr" in result.stdout


def test_user_environment_goes_to_both_sides(tmp_path):
    _, entries, _ = run_harness(tmp_path, "--env", "OMP_WAIT_POLICY=PASSIVE", rounds=1)
    starts = [e for e in entries if e["event"] == "start"]
    assert len(starts) == 2
    assert all(e["env"] == {"OMP_WAIT_POLICY": "PASSIVE"} for e in starts)


@pytest.mark.parametrize("argv", [["--cases", "nope"], ["--rounds", "0"],
                                  ["--env", "OMP_WAIT_POLICY"]])
def test_bad_arguments_are_refused(argv):
    result = subprocess.run([sys.executable, HARNESS, *argv], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2 and "error" in result.stderr
