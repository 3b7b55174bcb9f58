"""benchmarks/vs_pytorch.py runs each framework in a process of its own, at its defaults.

The framework workers are replaced by tests/fake_bench_worker.py (no torch, no TensorFlow):
what is checked is the parent's orchestration, not any timing.
"""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HARNESS = os.path.join(ROOT, "benchmarks", "vs_pytorch.py")
FAKE = os.path.join(ROOT, "tests", "fake_bench_worker.py")
THREADING = ("OMP_", "KMP_", "MKL_")


def harness(tmp_path, *extra, rounds=4, cases="edsr-x2-fp32", env=None):
    """The harness with fake workers: (completed process, the workers' log entries)."""
    wrapper = tmp_path / "fake-python"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE}" "$@"\n')
    wrapper.chmod(0o755)
    log, record = tmp_path / "workers.log", tmp_path / "record.json"
    environment = {k: v for k, v in os.environ.items() if not k.startswith(THREADING)}
    environment.update(env or {}, FAKE_WORKER_LOG=str(log))
    result = subprocess.run(
        [sys.executable, HARNESS, "--cases", cases, "--rounds", str(rounds),
         "--warmup", "0", "--pause", "0", "--torch-python", str(wrapper),
         "--sisr-python", str(wrapper), "--json", str(record), *extra],
        env=environment, capture_output=True, text=True, timeout=120)
    entries = [json.loads(line) for line in log.read_text().splitlines()] \
        if log.exists() else []
    return result, entries


def run_harness(tmp_path, *extra, rounds=4, cases="edsr-x2-fp32", env=None):
    result, entries = harness(tmp_path, *extra, rounds=rounds, cases=cases, env=env)
    assert result.returncode == 0, result.stderr
    return result, entries, json.loads((tmp_path / "record.json").read_text())


@pytest.fixture(scope="module")
def vs_pytorch():
    """benchmarks/vs_pytorch.py imported as the script imports itself (no torch, no sisr)."""
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location("vs_pytorch_under_test", HARNESS)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.pop(0)
    return module


def official_folders(tmp_path, vs_pytorch):
    """Folders holding (empty) files of the names the official factories load."""
    flags = []
    for project, (flag, _) in vs_pytorch.official.PROJECTS.items():
        folder = tmp_path / project
        folder.mkdir()
        for owner, files in vs_pytorch.official.FACTORIES.values():
            if owner == project:
                for name in files:
                    (folder / name).write_text("")
        flags += [flag, str(folder)]
    return flags


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


# The official networks of issues 20 and 21: case -> (sisr builder, its arguments, the
# official module's arguments that must say the same).
OFFICIAL = {
    "rcan": ("rcan", {"num_groups": 10, "num_blocks": 20, "num_filters": 64, "reduction": 16},
             {"n_resgroups": 10, "n_resblocks": 20, "n_feats": 64, "reduction": 16}),
    "rdn": ("rdn", {"num_blocks": 16, "num_layers": 8, "growth_rate": 64, "num_filters": 64},
            {"config": "B", "G0": 64}),  # configuration B is D16 C8 G64
    "mdsr": ("mdsr", {"num_filters": 64, "num_res_blocks": 16},
             {"n_feats": 64, "n_resblocks": 16, "scales": (2, 3, 4)}),
    "rrdbnet": ("rrdbnet", {"num_feat": 64, "num_block": 23, "num_grow_ch": 32},
                {"num_feat": 64, "num_block": 23, "num_grow_ch": 32}),
    "srvgg": ("srvgg_compact", {"num_feat": 64, "num_conv": 32, "act": "prelu"},
              {"num_feat": 64, "num_conv": 32, "act_type": "prelu"}),
}


def test_official_cases_have_the_issues_configurations(vs_pytorch):
    expected = {f"{net}-x{scale}-{precision}"
                for net, scales in (("rcan", (2, 4)), ("rdn", (2, 4)), ("mdsr", (2, 4)),
                                    ("rrdbnet", (4,)), ("srvgg", (4,)))
                for scale in scales
                for precision in (("fp32", "bf16") if net in ("rrdbnet", "srvgg")
                                  else ("fp32",))}
    assert set(vs_pytorch.GROUPS["official"]) == expected
    assert not expected & set(vs_pytorch.GROUPS["default"]) and \
        expected <= set(vs_pytorch.GROUPS["all"])
    factories = vs_pytorch.official.FACTORIES
    for name in expected:
        case = vs_pytorch.CASES[name]
        net, scale = name.split("-x")[0], int(name.split("-x")[1].split("-")[0])
        builder, sisr_args, official_args = OFFICIAL[net]
        assert case.sisr == (builder, {"scale": scale, **sisr_args})
        assert case.torch == (net, {"scale": scale, **official_args})
        assert (case.mode, case.size, case.batch) == ("infer", 128, 1)
        assert case.precision == ("float32" if name.endswith("fp32") else "bfloat16")
        assert case.port and case.official == factories[net][0]
        assert case.target == (1.5 if name.endswith("fp32") else None)


def test_official_case_runs_the_official_module_and_compares_outputs(tmp_path, vs_pytorch):
    folders = official_folders(tmp_path, vs_pytorch)
    result, entries, record = run_harness(tmp_path, *folders, rounds=2,
                                          cases="rcan-x4-fp32,rrdbnet-x4-bf16")
    starts = [e for e in entries if e["event"] == "start"]
    assert len(starts) == 4
    for case, project in (("rcan-x4-fp32", "edsr"), ("rrdbnet-x4-bf16", "basicsr")):
        flags = {e["side"]: e["flags"] for e in starts if e["flags"]["--case"] == case}
        # only the PyTorch worker loads the official module, from the folder given
        assert flags["torch"]["--official"] == str(tmp_path / project)
        assert "--official" not in flags["sisr"]
        # the weights the PyTorch worker saves are the ones the sisr worker ports
        assert flags["torch"]["--state"] == flags["sisr"]["--state"]
        assert flags["torch"]["--outputs"] == flags["sisr"]["--outputs"]
    cases = {r["case"]: r for r in record["records"]}
    assert cases["rcan-x4-fp32"]["agreement"]["shape"] == [1, 512, 512, 3]
    assert cases["rrdbnet-x4-bf16"]["agreement"]["float32_max_diff"] == 0.0
    assert "official module, same weights" in result.stdout


def test_official_case_whose_outputs_differ_is_refused(tmp_path, vs_pytorch):
    folders = official_folders(tmp_path, vs_pytorch)
    result, entries = harness(tmp_path, *folders, rounds=1, cases="mdsr-x2-fp32",
                              env={"FAKE_WORKER_OFFSET": "0.5"})
    assert result.returncode == 1
    assert "mdsr-x2-fp32" in result.stderr and "not run the same network" in result.stderr
    assert not [e for e in entries if e["event"] == "run"]  # nothing timed


def test_all_cases_without_the_folders_leave_the_official_ones_out(tmp_path, vs_pytorch):
    folders = official_folders(tmp_path, vs_pytorch)
    args = vs_pytorch.parse_args(["--cases", "all"])
    assert args.cases == [n for n in vs_pytorch.CASES if not vs_pytorch.CASES[n].official]
    args = vs_pytorch.parse_args(["--cases", "all", *folders])
    assert args.cases == list(vs_pytorch.CASES)


def test_official_case_without_its_folder_names_the_flag(tmp_path):
    result = subprocess.run([sys.executable, HARNESS, "--cases", "rdn-x2-fp32"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--edsr" in result.stderr and \
        "rdn-x2-fp32" in result.stderr
    result = subprocess.run([sys.executable, HARNESS, "--cases", "srvgg-x4-fp32",
                             "--realesrgan", str(tmp_path)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2 and "--realesrgan" in result.stderr and \
        "srvgg_arch.py" in result.stderr


@pytest.fixture(scope="module")
def upscale_bench():
    """benchmarks/upscale.py imported as a script (its top level imports no TensorFlow)."""
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location(
            "upscale_bench_under_test", os.path.join(ROOT, "benchmarks", "upscale.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.pop(0)
    return module


def test_upscale_overlaps_and_output_comparison(upscale_bench, tmp_path):
    assert upscale_bench.parse_overlaps("auto,32,0,32") == [None, 32, 0]
    with pytest.raises(ValueError):
        upscale_bench.parse_overlaps("auto,-3")
    reference = np.full((4, 5, 3), 100, np.uint8)
    moved = reference.copy()
    moved[0, 0] = (103, 100, 100)  # one pixel 3 levels off
    moved[1, 1, 2] = 101  # one pixel 1 level off
    np.save(tmp_path / "a.npy", moved)
    np.save(tmp_path / "b.npy", reference)
    most, off, psnr = upscale_bench.difference(tmp_path / "a.npy", tmp_path / "b.npy")
    assert (most, off) == (3, 1)
    assert psnr == pytest.approx(10 * np.log10(255 ** 2 / (10 / 60)))
    assert upscale_bench.difference(tmp_path / "b.npy", tmp_path / "b.npy")[2] == float("inf")
    assert {"rcan-x4", "rdn-x4", "rrdbnet-x4"} <= set(upscale_bench.CASES)
