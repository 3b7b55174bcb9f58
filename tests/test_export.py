"""sisr.export: the exported artifacts, run, reproduce the Keras model."""

import importlib.util
import os

import numpy as np
import pytest
import tensorflow as tf

import sisr.export as export_module
from reference_data import load_compact, port_args
from sisr import resolve
from sisr.export import ExportError, export, main, run_exported
from sisr.model import edsr, wdsr_b
from sisr.port import port
from sisr.saving import save_model

LITERT_TOL = 1e-3


def lr_batch(shape=(2, 9, 13, 3), seed=0):
    return np.random.default_rng(seed).uniform(0, 255, shape).astype(np.float32)


@pytest.fixture
def model():
    # x3: its pixel shuffle and odd sizes catch layout mistakes that x2 could hide.
    return edsr(scale=3, num_filters=8, num_res_blocks=2)


def keras_sr(model, lr):
    return np.asarray(model(lr, training=False))


def test_saved_model_float_and_uint8_signatures(tmp_path, model):
    out = str(tmp_path / "sm")
    assert export(model, out, format="saved_model") == out
    loaded = tf.saved_model.load(out)
    for shape in ((2, 9, 13, 3), (1, 16, 5, 3)):  # any size, any batch
        lr = lr_batch(shape)
        expected = keras_sr(model, lr)
        got = loaded.serve(tf.constant(lr)).numpy()
        assert got.dtype == np.float32 and got.shape == expected.shape
        assert np.abs(got - expected).max() < 1e-4
        lr_u8 = np.round(lr).astype(np.uint8)
        got_u8 = loaded.serve_uint8(tf.constant(lr_u8)).numpy()
        assert got_u8.dtype == np.uint8
        reference = resolve(model, lr_u8)
        # the same float graph, clipped and rounded: equal up to rare rounding ties
        assert np.abs(got_u8.astype(int) - reference).max() <= 1
        assert np.mean(got_u8 == reference) > 0.999
    default = loaded.signatures["serving_default"]
    outputs = default(lr=tf.constant(lr_batch()))
    assert list(outputs.values())[0].shape == (2, 27, 39, 3)


def test_litert_dynamic_size(tmp_path, model):
    out = str(tmp_path / "m.tflite")
    export(model, out, format="litert")
    for shape in ((1, 9, 13, 3), (2, 6, 11, 3)):
        lr = lr_batch(shape)
        got = run_exported(out, "litert", lr)
        assert got.shape == (shape[0], shape[1] * 3, shape[2] * 3, 3)
        assert np.abs(got - keras_sr(model, lr)).max() < LITERT_TOL


def test_litert_fixed_size(tmp_path, model):
    out = str(tmp_path / "m.tflite")
    export(model, out, format="litert", input_size=(10, 12))
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        Interpreter = tf.lite.Interpreter
    details = Interpreter(model_path=out).get_input_details()[0]
    assert list(details["shape"][1:]) == [10, 12, 3]
    lr = lr_batch((1, 10, 12, 3))
    assert np.abs(run_exported(out, "litert", lr) - keras_sr(model, lr)).max() < LITERT_TOL


@pytest.mark.parametrize("name", ["wdsr_b_f16_b2_x3.npz", "edsr_f16_b2_rs0.1_x4.npz"])
def test_ported_official_model_exports_to_litert(tmp_path, name):
    # The exported file reproduces the official PyTorch output (tests/data/compact).
    state_dict, x, expected, entry = load_compact(name)
    ported = port(state_dict, **port_args(entry))
    out = str(tmp_path / "ported.tflite")
    export(ported, out, format="litert")
    got = run_exported(out, "litert", x.transpose(0, 2, 3, 1))
    assert np.abs(got.transpose(0, 3, 1, 2) - expected).max() < LITERT_TOL


@pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("tf2onnx", "onnx", "onnxruntime")),
    reason="ONNX export needs tf2onnx, onnx and onnxruntime")
def test_onnx(tmp_path):
    model = wdsr_b(scale=3, num_filters=6, num_res_blocks=2)
    out = str(tmp_path / "m.onnx")
    export(model, out, format="onnx")
    for shape in ((1, 9, 13, 3), (2, 5, 7, 3)):
        lr = lr_batch(shape)
        assert np.abs(run_exported(out, "onnx", lr) - keras_sr(model, lr)).max() < 1e-3


def test_onnx_without_tooling_says_what_is_missing(tmp_path, model, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(export_module.importlib.util, "find_spec",
                        lambda name, *a: None if name == "tf2onnx" else real(name, *a))
    out = tmp_path / "m.onnx"
    with pytest.raises(ExportError, match="needs tf2onnx, which is not installed"):
        export(model, str(out), format="onnx")
    assert not out.exists()
    assert os.listdir(tmp_path) == []  # no temporary file left behind


def test_bad_arguments(tmp_path, model):
    with pytest.raises(ExportError, match="unknown export format 'coreml'"):
        export(model, str(tmp_path / "m"), format="coreml")
    with pytest.raises(ExportError, match=r"litert export is a \.tflite file"):
        export(model, str(tmp_path / "m.onnx"), format="litert")
    with pytest.raises(ExportError, match="input_size must be two positive ints"):
        export(model, str(tmp_path / "m.tflite"), format="litert", input_size=(0, 3))


def test_existing_output_needs_force(tmp_path, model):
    out = tmp_path / "m.tflite"
    out.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match=r"m.tflite exists; pass force=True to"):
        export(model, str(out), format="litert")
    assert out.read_bytes() == b"keep me"
    export(model, str(out), format="litert", force=True)
    lr = lr_batch((1, 9, 13, 3))
    assert np.abs(run_exported(str(out), "litert", lr) - keras_sr(model, lr)).max() < LITERT_TOL
    # --force replaces a previous SavedModel export, never another folder.
    sm = tmp_path / "sm"
    sm.mkdir()
    (sm / "old.txt").write_text("old")
    with pytest.raises(ExportError, match="is not a SavedModel folder; force=True only"):
        export(model, str(sm), format="saved_model", force=True)
    assert (sm / "old.txt").read_text() == "old"
    (sm / "saved_model.pb").write_bytes(b"a previous export")
    export(model, str(sm), format="saved_model", force=True)
    assert not (sm / "old.txt").exists() and (sm / "saved_model.pb").stat().st_size > 100
    assert sorted(os.listdir(tmp_path)) == ["m.tflite", "sm"]


def test_cli(tmp_path, model, capsys):
    path = str(tmp_path / "m.keras")
    save_model(model, path)
    out = str(tmp_path / "m.tflite")
    assert main([path, "--format", "litert", "-o", out, "--input-size", "8", "10",
                 "--check"]) == 0
    printed = capsys.readouterr().out
    assert "max abs difference from Keras" in printed
    assert float(printed.rsplit(" ", 1)[1]) < LITERT_TOL
    assert main([path, "--format", "litert", "-o", out]) == 2
    err = capsys.readouterr().err
    assert "exists; pass --force to replace it" in err and "force=True" not in err
    assert main([str(tmp_path / "missing.keras"), "--format", "saved_model",
                 "-o", str(tmp_path / "sm")]) == 2
    assert "missing.keras: no such model file" in capsys.readouterr().err
    assert not (tmp_path / "sm").exists()
