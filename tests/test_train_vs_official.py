"""The pure parts of benchmarks/train_vs_official.py: folder layout, the two trainers'
options, chunk bookkeeping and the report's maths, on fake run logs (no torch, no
training, no network)."""

import importlib.util
import math
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def tvo():
    path = os.path.join(ROOT, "benchmarks", "train_vs_official.py")
    spec = importlib.util.spec_from_file_location("train_vs_official", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


REC = {"batch_size": 4, "lr_patch": 16, "chunk": 250, "chunks": 8, "decay_chunks": 4,
       "gamma": 0.5, "scale": 2}


def test_layout_is_div2k_shaped_with_held_out_validation(tvo):
    rows = tvo.layout(10, 3)
    assert len(rows) == 13
    train = [r for r in rows if r["subset"] == "train"]
    valid = [r for r in rows if r["subset"] == "valid"]
    assert train[0]["official_hr"] == "official/DIV2K/DIV2K_train_HR/0001.png"
    assert train[0]["official_lr"] == "official/DIV2K/DIV2K_train_LR_bicubic/X2/0001x2.png"
    # The official tree keeps validation images after the training ids, in DIV2K_train_*;
    # sisr's tree has them as DIV2K_valid_* ids from 801.
    assert [r["official_hr"][-8:] for r in valid] == ["0011.png", "0012.png", "0013.png"]
    assert valid[2]["official_lr"].endswith("DIV2K_train_LR_bicubic/X2/0013x2.png")
    assert [r["sisr_hr"] for r in valid][0] == "sisr/DIV2K_valid_HR/0801.png"
    assert valid[1]["sisr_lr"] == "sisr/DIV2K_valid_LR_bicubic/X2/0802x2.png"
    assert train[9]["sisr_hr"] == "sisr/DIV2K_train_HR/0010.png"
    assert len({r["official_hr"] for r in rows}) == 13
    assert tvo.data_range(10, 3) == "1-10/11-13"


def test_crops(tvo):
    image = np.zeros((301, 445, 3), np.uint8)
    assert tvo.crop_to_multiple(image, 2).shape == (300, 444, 3)
    assert tvo.centre_crop(image, 192).shape == (192, 192, 3)
    assert tvo.centre_crop(image[:100], 192).shape == (100, 192, 3)


def _value(argv, flag):
    return argv[argv.index(flag) + 1]


def test_both_trainers_get_the_same_recipe(tvo):
    sisr = tvo.sisr_command("edsr", 2, REC, "/d", "/o", python="py")
    official = tvo.official_options("edsr", 2, REC, 10, 3, "/d", "/s")
    assert _value(sisr, "--profile") == "edsr-16"
    assert _value(sisr, "--steps-per-epoch") == _value(official, "--test_every") == "250"
    # main.py trains --epochs - 1 epochs.
    assert int(_value(official, "--epochs")) - 1 == int(_value(sisr, "--epochs")) == 8
    assert _value(sisr, "--batch-size") == _value(official, "--batch_size") == "4"
    assert "lr_patch=16" in sisr and _value(official, "--patch_size") == "32"
    assert float(_value(sisr, "--learning-rate")) == float(_value(official, "--lr")) == 1e-4
    # Halved after chunk 4: official MultiStepLR milestone 4 (epochs), sisr step 1000.
    assert "lr_decay_steps=[1000]" in sisr and _value(official, "--decay") == "4"
    assert _value(sisr, "--seed") == _value(official, "--seed") == "2"
    assert _value(official, "--data_range") == "1-10/11-13"
    assert _value(official, "--dir_data") == "/d/official" and _value(sisr, "--dataset") == \
        "/d/sisr"
    wdsr = tvo.official_options("wdsr-b", 1, REC, 10, 3, "/d", "/s")
    assert _value(wdsr, "--model") == "WDSR_B" and _value(wdsr, "--n_feats") == "32"
    assert _value(tvo.sisr_command("wdsr-b", 1, REC, "/d", "/o"), "--profile") == "wdsr-b-16"


def test_chunk_bookkeeping(tvo, tmp_path):
    path = str(tmp_path / "chunks.jsonl")
    assert tvo.read_chunks(path) == [] and tvo.run_status([], 2) == "new"
    records = [
        {"side": "sisr", "chunk": 1, "step": 250, "wall_s": 10.0, "cpu_s": 15.0},
        {"side": "official", "chunk": 1, "step": 250, "wall_s": 30.0, "cpu_s": 50.0},
        {"side": "official", "chunk": 2, "step": 500, "wall_s": 20.0, "cpu_s": 35.0},
    ]
    for record in records:
        tvo.append_chunk(path, record)
    assert tvo.read_chunks(path) == records
    assert tvo.run_status(records, 2) == "partial"
    records.append({"side": "sisr", "chunk": 2, "step": 500, "wall_s": 12.0, "cpu_s": 18.0})
    assert tvo.run_status(records, 2) == "done"
    assert tvo.cumulative(records, "sisr") == [(250, 10.0, 15.0), (500, 22.0, 33.0)]
    assert tvo.cumulative(records, "official") == [(250, 30.0, 50.0), (500, 50.0, 85.0)]


def test_chunk_end_detection(tvo):
    log = ("[Epoch 1]\tLearning rate: 1.00e-4\n\nEvaluation:\n[DIV2K x2]\tPSNR: 21.017\n"
           "Forward: 2.1s\n\nSaving...\nTotal: 2.49s\n\n[Epoch 2]\tLearning rate: 1.00e-4\n"
           "\nEvaluation:\n")
    assert tvo.official_chunks_done(log) == 1
    assert tvo.official_chunks_done(log + "Total: 3.0s\n") == 2
    assert tvo.sisr_chunks_done("") == 0
    assert tvo.sisr_chunks_done("epoch,loss,val_psnr\n") == 0
    assert tvo.sisr_chunks_done("epoch,loss,val_psnr\n0,1,20\n1,1,21\n") == 2


def test_time_to_reach_and_spread(tvo):
    points = [(250, 10.0, 28.0), (500, 20.0, 29.5), (750, 30.0, 29.4), (1000, 40.0, 30.1)]
    assert tvo.time_to_reach(points, 29.5) == 20.0
    assert tvo.time_to_reach(points, 30.0) == 40.0
    assert tvo.time_to_reach(points, 31.0) is None
    mean, std, width = tvo.spread([30.0, 30.4])
    assert mean == pytest.approx(30.2) and width == pytest.approx(0.4)
    assert std == pytest.approx(0.4 / math.sqrt(2))
    assert tvo.spread([30.0]) == (30.0, 0.0, 0.0)
    diff, seed_range = tvo.final_difference([30.1, 30.3], [30.0, 30.6])
    assert diff == pytest.approx(-0.1) and seed_range == pytest.approx(0.6)


def _fake_run(sisr_psnr, official_psnr, sisr_wall, official_wall):
    records, sisr, official = [], {}, {}
    for k, (ps, po) in enumerate(zip(sisr_psnr, official_psnr), start=1):
        records.append({"side": "sisr", "chunk": k, "step": 250 * k, "wall_s": sisr_wall,
                        "cpu_s": 2 * sisr_wall, "loadavg": 3.0})
        records.append({"side": "official", "chunk": k, "step": 250 * k,
                        "wall_s": official_wall, "cpu_s": 2 * official_wall, "loadavg": 4.0})
        sisr[k], official[k] = ps, po
    return {"records": records, "sisr": sisr, "official": official}


def test_summary_report_and_plot(tvo, tmp_path):
    runs = {("edsr", 1): _fake_run([28, 29, 30], [27, 28.5, 29.8], 10, 30),
            ("edsr", 2): _fake_run([28, 29.5, 29.95], [27.5, 29, 30.0], 10, 30)}
    summary = tvo.summarize(runs, 250)["edsr"]
    assert summary["steps"] == 750
    assert summary["final_psnr"] == {"sisr": [30, 29.95], "official": [29.8, 30.0]}
    assert summary["target_psnr"] == pytest.approx(29.9)
    assert summary["difference"] == pytest.approx(0.075)
    assert summary["seed_range"] == pytest.approx(0.2) and summary["within_spread"]
    # sisr: seed 1 reaches 29.9 at chunk 3 (30 s), seed 2 at chunk 3 (30 s); official:
    # seed 1 never (29.8), seed 2 at chunk 3 (90 s).
    assert summary["time_to_target_s"] == {"sisr": [30.0, 30.0], "official": [None, 90.0]}
    # Within 0.1 dB of the official final (29.8 dB): everyone at chunk 3.
    assert summary["near_target_psnr"] == pytest.approx(29.8)
    assert summary["time_to_near_target_s"] == {"sisr": [30.0, 30.0], "official": [90.0, 90.0]}
    assert summary["final_wall_s"] == {"sisr": [30.0, 30.0], "official": [90.0, 90.0]}
    text = tvo.report_markdown({"edsr": summary}, REC, [3.0, 4.0])
    assert "| edsr | official | 29.800, 30.000 | 29.900 | -, 90 | 90, 90 | 90, 90 |" in text
    assert "sisr - official = +0.075 dB" in text and "within the spread" in text
    tvo.plot({"edsr": summary}, str(tmp_path / "psnr.png"))
    assert (tmp_path / "psnr.png").stat().st_size > 1000


FAKE_TRAINER = r'''
import os, sys, time
side, beat_path = sys.argv[1], sys.argv[2]
if side == "sisr":
    out, chunks = sys.argv[3], int(sys.argv[4])
    os.makedirs(os.path.join(out, "run"), exist_ok=True)
    done = os.path.join(out, "run", "training.csv")
    line = lambda k: ("epoch,val_psnr\n" if k == 0 else "") + f"{k},{20 + k}\n"
else:
    argv = sys.argv
    out = argv[argv.index("--save") + 1]
    chunks = int(argv[argv.index("--epochs") + 1]) - 1
    os.makedirs(out, exist_ok=True)
    done = os.path.join(out, "log.txt")
    line = lambda k: f"[Epoch {k + 1}]\nTotal: 0.1s\n"
for k in range(chunks):
    end = time.monotonic() + 0.3
    while time.monotonic() < end:
        with open(beat_path, "a") as f:
            f.write(f"{time.time()} {side}\n")
        time.sleep(0.02)
    with open(done, "a") as f:
        f.write(line(k))
'''


def test_run_pair_alternates_chunks_and_never_runs_both(tvo, tmp_path, monkeypatch):
    fake = tmp_path / "fake_trainer.py"
    fake.write_text(FAKE_TRAINER)
    beats = tmp_path / "beats.txt"
    torch_python = tmp_path / "fake-torch-python"
    torch_python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{fake}" official '
                            f'"{beats}" "$@"\n')
    torch_python.chmod(0o755)
    monkeypatch.setattr(tvo, "sisr_command", lambda net, seed, rec, data, out: [
        sys.executable, str(fake), "sisr", str(beats), out, str(rec["chunks"])])
    rec = dict(REC, chunks=3)
    work = str(tmp_path / "work")
    tvo.run_pair(work, "edsr", 1, rec, {"n_train": 10, "n_valid": 3}, str(tmp_path),
                 str(torch_python))
    records = tvo.read_chunks(os.path.join(work, "runs", "edsr-seed1", "chunks.jsonl"))
    assert [(r["side"], r["chunk"]) for r in records] == [
        ("sisr", 1), ("official", 1), ("official", 2), ("sisr", 2), ("sisr", 3),
        ("official", 3)]
    # A chunk's CPU time is read from /proc, or from the exit status of a trainer that has
    # finished; the six chunks of work (0.3 s each, mostly sleeping) take some.
    assert all(r["wall_s"] > 0 and r["cpu_s"] >= 0 for r in records)
    assert tvo.run_status(records, 3) == "done"
    # Heartbeats of the two fake trainers come in blocks, one block per turn: the side
    # that is not training is stopped.
    sides = [line.split()[1] for line in sorted(beats.read_text().splitlines(),
                                                key=lambda s: float(s.split()[0]))]
    switches = sum(1 for a, b in zip(sides, sides[1:]) if a != b)
    assert switches <= 3  # sisr | official official | sisr sisr | official
    # A finished pair is skipped.
    tvo.run_pair(work, "edsr", 1, rec, {"n_train": 10, "n_valid": 3}, str(tmp_path),
                 str(torch_python))
    assert tvo.read_chunks(os.path.join(work, "runs", "edsr-seed1", "chunks.jsonl")) == \
        records


def test_targets_when_sisr_ends_lower(tvo):
    runs = {("edsr", 1): _fake_run([28, 29.8, 29.85], [28, 29.6, 30.0], 10, 30),
            ("edsr", 2): _fake_run([28, 29.7, 29.85], [28, 29.5, 29.96], 10, 30)}
    summary = tvo.summarize(runs, 250)["edsr"]
    assert summary["target_psnr"] == pytest.approx(29.98)
    assert summary["time_to_target_s"] == {"sisr": [None, None], "official": [90.0, None]}
    assert summary["near_target_psnr"] == pytest.approx(29.88)
    assert summary["time_to_near_target_s"] == {"sisr": [None, None], "official": [90.0, 90.0]}
    near = tvo.summarize(runs, 250, margin=0.2)["edsr"]
    assert near["time_to_near_target_s"] == {"sisr": [20.0, 30.0], "official": [90.0, 90.0]}
    # 0.13 dB lower, seed ranges 0 (sisr) and 0.04 (official): outside the spread.
    assert summary["difference"] == pytest.approx(-0.13) and not summary["within_spread"]
