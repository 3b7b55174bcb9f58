"""python -m sisr.evaluate on tiny models and image folders."""

import json

import numpy as np
import pytest
from PIL import Image

import sisr
from sisr import evaluate, metrics
from sisr.imresize import imresize
from sisr.model import edsr, wdsr_b
from sisr.upscaling import upscale_image


def random_image(shape, seed):
    # Smooth-ish content so that bicubic is a meaningful baseline.
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (shape[0] // 4 + 1, shape[1] // 4 + 1, 3)).astype(np.uint8)
    return imresize(small, output_shape=shape[:2])


@pytest.fixture
def hr_folder(tmp_path):
    folder = tmp_path / "hr"
    folder.mkdir()
    for i, shape in enumerate([(36, 40), (42, 30)]):
        Image.fromarray(random_image(shape, i)).save(folder / f"img{i}.png")
    return folder


@pytest.fixture
def models(tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    sisr.save_model(edsr(2, num_filters=8, num_res_blocks=1), folder / "edsr-tiny.keras")
    sisr.save_model(wdsr_b(2, num_filters=8, num_res_blocks=1), folder / "wdsr-tiny.keras")
    return folder


def _run(args, tmp_path):
    out = tmp_path / "eval.json"
    code = evaluate.main(args + ["-o", str(out), "-q"])
    return code, (json.loads(out.read_text()) if out.exists() else None)


def test_scores_every_model_and_bicubic(models, hr_folder, tmp_path, capsys):
    code, result = _run(["--model", str(models), "--dataset", str(hr_folder)], tmp_path)
    assert code == 0
    assert (result["scale"], result["channel"], result["shave"]) == (2, "rgb", 8)
    names = [row["name"] for row in result["results"]]
    assert names == ["bicubic", "edsr-tiny", "wdsr-tiny"]
    model = sisr.load_model(models / "edsr-tiny.keras")
    for row in result["results"]:
        assert [item["name"] for item in row["images"]] == ["img0", "img1"]
        for item in row["images"]:
            hr = np.asarray(Image.open(hr_folder / f"{item['name']}.png"))
            lr = imresize(hr, scale=0.5)
            if row["name"] == "bicubic":
                sr = imresize(lr, scale=2)
            elif row["name"] == "edsr-tiny":
                sr = upscale_image(model, lr)
            else:
                continue
            assert item["psnr"] == pytest.approx(metrics.psnr(sr, hr, shave=8), abs=1e-9)
            assert item["ssim"] == pytest.approx(metrics.ssim(sr, hr, shave=8), abs=1e-9)
        assert row["psnr"] == pytest.approx(np.mean([i["psnr"] for i in row["images"]]))
    # Untrained models lose to bicubic; the best of them is still named.
    best = max(result["results"][1:], key=lambda r: r["psnr"])["name"]
    assert result["best"] == best
    printed = capsys.readouterr().out
    assert "bicubic" in printed and f"best: {best}" in printed


def test_y_channel_shave_and_self_ensemble(models, hr_folder, tmp_path):
    model_path = str(models / "edsr-tiny.keras")
    code, plain = _run(["--model", model_path, "--dataset", str(hr_folder), "--y-channel"],
                       tmp_path)
    assert code == 0
    assert (plain["channel"], plain["shave"]) == ("y", 2)
    code, ensemble = _run(["--model", model_path, "--dataset", str(hr_folder), "--y-channel",
                           "--self-ensemble", "--shave", "3", "--force"], tmp_path)
    assert code == 0
    assert ensemble["self_ensemble"] and ensemble["shave"] == 3
    assert ensemble["results"][1]["psnr"] != pytest.approx(plain["results"][1]["psnr"])
    hr = np.asarray(Image.open(hr_folder / "img0.png"))
    bicubic = imresize(imresize(hr, scale=0.5), scale=2)
    assert ensemble["results"][0]["images"][0]["psnr"] == pytest.approx(
        metrics.psnr(bicubic, hr, shave=3, y_only=True))


def _corrupt_png(source, target):
    """A copy of a PNG whose compressed pixel data is garbled (header and end intact)."""
    data = bytearray(source.read_bytes())
    start = data.index(b"IDAT") + 40
    data[start:start + 40] = bytes(b ^ 0x55 for b in data[start:start + 40])
    target.write_bytes(bytes(data))


def test_bad_models_and_corrupt_images_are_reported(models, hr_folder, tmp_path, caplog):
    sisr.save_model(edsr(3, num_filters=8, num_res_blocks=1), models / "x3.keras")
    (models / "junk.keras").write_text("not a model")
    _corrupt_png(hr_folder / "img0.png", hr_folder / "img5-corrupt.png")
    code, result = _run(["--model", str(models), "--dataset", str(hr_folder)], tmp_path)
    assert code == 1
    assert [row["name"] for row in result["results"]] == ["bicubic", "edsr-tiny", "wdsr-tiny"]
    assert all([i["name"] for i in row["images"]] == ["img0", "img1"]
               for row in result["results"])
    errors = " | ".join(e["error"] for e in result["errors"])
    assert "x3.keras is a x3 model, but the first model is x2" in errors
    assert "junk.keras is not a .keras model file" in errors
    assert "img5-corrupt.png: cannot decode image" in errors
    assert "img5-corrupt" in caplog.text


def test_truncated_image_stops_before_any_work(models, hr_folder, tmp_path, capsys):
    # sisr.data checks every file's header and end marker when the dataset is opened:
    # a truncated download is named up front and nothing is evaluated.
    truncated = hr_folder / "truncated.png"
    truncated.write_bytes((hr_folder / "img0.png").read_bytes()[:200])
    code, result = _run(["--model", str(models), "--dataset", str(hr_folder)], tmp_path)
    assert code == 2 and result is None
    assert "truncated.png" in capsys.readouterr().err


def test_refuses_bad_arguments(models, hr_folder, tmp_path, capsys):
    model_path = str(models / "edsr-tiny.keras")
    out = tmp_path / "eval.json"
    out.write_text("keep me")
    code = evaluate.main(["--model", model_path, "--dataset", str(hr_folder), "-o", str(out)])
    assert code == 2 and out.read_text() == "keep me"
    assert "not overwriting" in capsys.readouterr().err
    code = evaluate.main(["--model", model_path, "--dataset", str(hr_folder), "--scale", "4"])
    assert code == 2
    assert "is a x2 model, but --scale 4 was asked" in capsys.readouterr().err
    code = evaluate.main(["--model", str(tmp_path / "none"), "--dataset", str(hr_folder)])
    assert code == 2 and "no such model file" in capsys.readouterr().err
    code = evaluate.main(["--model", model_path, "--dataset", str(tmp_path / "nowhere")])
    assert code == 2 and "nowhere" in capsys.readouterr().err
    blocked = tmp_path / "file" / "eval.json"
    (tmp_path / "file").write_text("")
    code = evaluate.main(["--model", model_path, "--dataset", str(hr_folder), "-o",
                          str(blocked)])
    assert code == 2 and "cannot write" in capsys.readouterr().err


def test_images_too_small_for_the_shave_are_reported(models, tmp_path, caplog):
    folder = tmp_path / "small"
    folder.mkdir()
    Image.fromarray(random_image((36, 36), 5)).save(folder / "ok.png")
    Image.fromarray(random_image((14, 40), 6)).save(folder / "thin.png")
    code, result = _run(["--model", str(models / "edsr-tiny.keras"), "--dataset", str(folder)],
                        tmp_path)
    assert code == 1
    assert [i["name"] for i in result["results"][1]["images"]] == ["ok"]
    assert "thin" in result["errors"][0]["item"] and "too small" in caplog.text


def test_demo_dataset_runs(models, tmp_path):
    code, result = _run(["--model", str(models / "wdsr-tiny.keras"), "--dataset", "demo",
                         "--limit", "1"], tmp_path)
    assert code == 0
    assert result["dataset"] == "demo" and len(result["results"][0]["images"]) == 1
    assert result["results"][0]["psnr"] > 20  # bicubic on a photograph


def test_several_models_in_one_table_per_image_rows_and_only_results_on_stdout(
        models, hr_folder, tmp_path, capsys, caplog):
    # A grayscale image: its warning goes to the log (stderr), not among the results.
    Image.fromarray(random_image((40, 36), 5)[..., 0]).save(hr_folder / "gray.png")
    edsr_file, wdsr_file = models / "edsr-tiny.keras", models / "wdsr-tiny.keras"
    code, result = _run(["--model", str(edsr_file), str(wdsr_file), "--dataset",
                         str(hr_folder), "--per-image"], tmp_path)
    assert code == 0
    assert [row["name"] for row in result["results"]] == ["bicubic", "edsr-tiny", "wdsr-tiny"]
    assert result["subset"] is None  # a plain folder has no subsets
    out = capsys.readouterr().out
    assert "gray.png: grayscale converted to RGB" in caplog.text and "warning" not in out
    lines = out.splitlines()
    # The header (no "valid" for a plain folder), the per-image table, the means, the best.
    assert lines[0] == f"{hr_folder} x2, RGB, shave 8"
    assert lines[1].split() == ["image", "bicubic", "edsr-tiny", "wdsr-tiny"]
    rows = {line.split()[0]: line for line in lines[3:6]}
    assert set(rows) == {"gray", "img0", "img1"}
    for column, row in enumerate(result["results"]):
        for item in row["images"]:
            cells = [c.strip() for c in rows[item["name"]].split("  ") if c.strip()]
            assert cells[1 + column] == f"{item['psnr']:.4f} dB / {item['ssim']:.5f}"
    assert lines[6] == ""
    assert lines[7].split()[:3] == ["model", "PSNR", "dB"]
    assert [line.split()[0] for line in lines[9:12]] == ["bicubic", "edsr-tiny", "wdsr-tiny"]
    assert lines[12].startswith("best: ") and len(lines) == 13
    assert "valid" not in out


def test_a_dataset_with_subsets_names_the_subset(models, tmp_path, capsys):
    code, result = _run(["--model", str(models / "edsr-tiny.keras"), "--dataset", "demo",
                         "--limit", "1"], tmp_path)
    assert code == 0 and result["subset"] == "valid"
    assert capsys.readouterr().out.startswith("demo (valid) x2, RGB")
