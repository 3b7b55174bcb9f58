"""The krasserm `.h5` reader on hostile and malformed files (issue 27, items 2 and 11).

HDF5 bombs (a small file declaring a huge dataset) are refused before anything is read,
by `python -m sisr.port` and `python -m sisr.pretrained fetch NAME --file` alike, with a
one-line error and a bounded peak memory (subprocesses). Links out of the file, virtual
datasets, external storage and non-float weights are refused. A fuzz test mutates every
field of the JSON config and every weight and name list of the test files: each mutant
ports or raises a one-line `SisrError`, never anything else.
"""

import copy
import json
import os
import pathlib
import random
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest

from peak_memory import PRINT_PEAK, peak_kib
from sisr.errors import SisrError
from sisr.port import CheckpointError, port
from sisr.port import krasserm_h5 as h5
from sisr.port import krasserm_schema as schema

DATA = pathlib.Path(__file__).parent / "data" / "krasserm"
ROOT = pathlib.Path(__file__).resolve().parents[1]
WEIGHTS_FILES = ("edsr_x3_scaled_tf2.h5", "wdsr_a_x2_tf2.h5", "srresnet_x4_tf2.h5")
FULL_FILES = ("edsr_x2_keras2.h5", "srresnet_x4_keras2.h5", "wdsr_a_x2_scaled_full_tf2.h5")
BOMB_SHAPE = (3, 3, 16384, 8192)  # 4.5 GiB of float32
RSS_LIMIT_KB = 1536 * 1024  # 1.5 GiB


def copy_of(name, tmp_path, target="model.h5"):
    path = tmp_path / target
    shutil.copyfile(DATA / name, path)
    return str(path)


def weights_group(f):
    return f["model_weights"] if "model_config" in f.attrs else f


def weights(path):
    """(layer name, weight name, HDF5 path) of every stored weight, in order."""
    out = []
    with h5py.File(path, "r") as f:
        group = weights_group(f)
        for layer in group.attrs["layer_names"]:
            layer = layer.decode() if isinstance(layer, bytes) else layer
            for weight in group[layer].attrs.get("weight_names", []):
                weight = weight.decode() if isinstance(weight, bytes) else weight
                out.append((layer, weight, group[layer][weight].name))
    return out


def assert_refused(path, *parts, error=SisrError):
    """The port refuses `path` with a one-line `error` naming the file and `parts`."""
    with pytest.raises(error) as info:
        port(path, source="krasserm")
    message = str(info.value)
    assert "\n" not in message and path in message, message
    for part in parts:
        assert part in message, message
    return message


def make_bomb(tmp_path, name="edsr_x3_scaled_tf2.h5"):
    """A copy of a valid file whose head conv kernel is declared BOMB_SHAPE, stored as
    gzip-compressed fill value (nothing written)."""
    path = copy_of(name, tmp_path, "bomb.h5")
    layer, weight, where = weights(path)[0]
    assert weight.endswith("kernel:0")
    with h5py.File(path, "r+") as f:
        del f[where]
        f.create_dataset(where, shape=BOMB_SHAPE, dtype="f4", chunks=(3, 3, 256, 256),
                         compression="gzip", fillvalue=0)
    assert os.path.getsize(path) < 100_000
    return path, weight


# ----------------------------------------------------------------------------- bombs

CHILD = """
import runpy, sys
sys.argv = [sys.argv[1]] + sys.argv[2:]
try:
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
    code = 0
except SystemExit as stop:
    code = stop.code
""" + PRINT_PEAK + "sys.exit(code)\n"


def run_child(module, args, env=None):
    """Runs `python -m module args` in a subprocess; (exit status, stderr lines without
    log noise, peak RSS in KiB)."""
    environ = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3",
               **(env or {})}
    done = subprocess.run([sys.executable, "-c", CHILD, module, *args], env=environ,
                          capture_output=True, text=True, timeout=600)
    assert "peak_kib" in done.stdout, done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    return done.returncode, lines, peak_kib(done.stdout)


def test_bomb_refused_by_the_port_cli_unread(tmp_path):
    path, weight = make_bomb(tmp_path)
    out = tmp_path / "out.keras"
    status, lines, rss = run_child("sisr.port", [path, "--from", "krasserm", "-o", str(out)])
    assert status == 2, lines
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, lines
    assert path in errors[0] and weight in errors[0] and "GiB" in errors[0], lines
    assert not any("Traceback" in line for line in lines), lines
    assert rss < RSS_LIMIT_KB, f"peak RSS {rss} KiB"
    assert not out.exists()


def pretrained_env(tmp_path, name, file):
    """The environment of a test registry with one krasserm entry without a known hash
    (as `tests/test_pretrained.py` writes them), offline, with an empty SISR_HOME."""
    registry = tmp_path / "registry.json"
    registry.write_text(json.dumps({"format": 1, "models": {name: {
        "description": "test model", "builder": "edsr",
        "args": {"scale": 3, "num_filters": 6, "num_res_blocks": 2}, "scale": 3,
        "parameters": 1234, "url": (tmp_path / "pub" / file).as_uri(), "file": file,
        "source": "tests", "homepage": "https://example.org", "licence": "MIT",
        "converter": "krasserm", "archive": False, "sha256": None, "installed": [],
        "score": None}}}))
    return {"SISR_PRETRAINED_REGISTRY": str(registry), "SISR_HOME": str(tmp_path / "home"),
            "SISR_OFFLINE": "1"}


def test_bomb_refused_by_pretrained_fetch_file(tmp_path):
    path, weight = make_bomb(tmp_path)
    env = pretrained_env(tmp_path, "tiny-bomb", "bomb.h5")
    status, lines, rss = run_child("sisr.pretrained", ["fetch", "tiny-bomb", "--file", path],
                                   env)
    assert status == 1, lines
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, lines
    assert path in errors[0] and weight in errors[0] and "tiny-bomb" in errors[0], lines
    assert errors[0].count(path) == 1, lines  # named once
    assert not any("Traceback" in line for line in lines), lines
    assert rss < RSS_LIMIT_KB, f"peak RSS {rss} KiB"
    assert not (tmp_path / "home" / "models" / "tiny-bomb.keras").exists()


def no_reading(monkeypatch):
    def refuse(*args):
        raise AssertionError("a weight was read")

    monkeypatch.setattr(h5, "read", refuse)


def test_total_is_bounded_before_reading(tmp_path, monkeypatch):
    path = copy_of("edsr_x3_scaled_tf2.h5", tmp_path)
    no_reading(monkeypatch)
    monkeypatch.setattr(h5, "MAX_PARAMETERS", 500)
    assert_refused(path, "declares", "weights", "more than 500")


def test_weights_that_do_not_fit_the_sisr_layer_are_not_read(tmp_path, monkeypatch):
    """A bias declared larger than its conv: the layout walk does not look at biases, the
    pipeline checks the declared shape against the sisr layer before anything is read."""
    path = copy_of("edsr_x3_scaled_tf2.h5", tmp_path)
    layer, weight, where = weights(path)[1]
    assert weight.endswith("bias:0")
    with h5py.File(path, "r+") as f:
        del f[where]
        f.create_dataset(where, shape=(2 ** 20,), dtype="f4", compression="gzip")
    no_reading(monkeypatch)
    assert_refused(path, repr(layer), "(1048576,)", "does not fit sisr's head_conv")


def test_chunks_far_larger_than_the_data(tmp_path):
    path = copy_of("edsr_x3_scaled_tf2.h5", tmp_path)
    layer, weight, where = weights(path)[1]
    with h5py.File(path, "r+") as f:
        values = f[where][()]
        del f[where]
        f.create_dataset(where, data=values, maxshape=(None,), chunks=(2 ** 22,),
                         compression="gzip")
    assert_refused(path, weight, "chunks", error=CheckpointError)


def test_external_link_virtual_and_external_storage_are_refused(tmp_path):
    for kind in ("external link", "soft link", "virtual dataset", "external storage"):
        folder = tmp_path / kind.replace(" ", "_")
        folder.mkdir()
        path = copy_of("edsr_x3_scaled_tf2.h5", folder)
        layer, weight, where = weights(path)[0]
        replace(path, where, kind)
        assert_refused(path, weight, kind, error=CheckpointError)


def test_json_nesting_is_bounded(tmp_path, monkeypatch):
    path = copy_of("edsr_x2_keras2.h5", tmp_path)
    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        config["config"]["name"] = "[" * 100_000 + "]" * 100_000  # a string: not nesting
        f.attrs["model_config"] = json.dumps(config)
    port(path, source="krasserm")
    with h5py.File(path, "r+") as f:
        f.attrs["model_config"] = "[" * 100_000 + "]" * 100_000
    assert_refused(path, "nests deeper than", error=CheckpointError)
    # json's own recursion limit is reported too, were the bound lifted
    monkeypatch.setattr(schema, "MAX_DEPTH", 10 ** 9)
    assert_refused(path, "model_config nests too deeply", error=CheckpointError)


def test_model_config_size_is_bounded(tmp_path, monkeypatch):
    path = copy_of("edsr_x2_keras2.h5", tmp_path)
    monkeypatch.setattr(h5, "MAX_CONFIG_BYTES", 2 ** 10)
    assert_refused(path, "'model_config' is larger than", error=CheckpointError)


@pytest.mark.parametrize("change, parts", [
    (lambda c: c["config"]["layers"].__setitem__(2, "conv2d_1"), ["layers[2]", "not an object"]),
    (lambda c: c["config"]["layers"][2].pop("class_name"), ["'conv2d_1'", "'class_name'"]),
    (lambda c: c["config"]["layers"][2].__setitem__("name", 7), ["layers[2]", "'name'"]),
    (lambda c: c["config"]["layers"][2].__setitem__("inbound_nodes", [{"args": []}]),
     ["'conv2d_1'", "inbound_nodes"]),
    (lambda c: c["config"].__setitem__("output_layers", [["nowhere", 0, 0]]),
     ["'nowhere'", "not one of its layers"]),
    (lambda c: c["config"].__setitem__("output_layers", "lambda_2"), ["output_layers"]),
    (lambda c: c["config"]["layers"][2]["config"].__setitem__("strides", "1"),
     ["'conv2d_1' config", "'strides'"]),
    (lambda c: c["config"]["layers"][2]["config"].__setitem__("kernel_size", [3.0, 3]),
     ["'conv2d_1' config", "'kernel_size'"]),
])
def test_malformed_model_config(tmp_path, change, parts):
    path = copy_of("edsr_x2_keras2.h5", tmp_path)
    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        assert config["config"]["layers"][2]["name"] == "conv2d_1"
        change(config)
        f.attrs["model_config"] = json.dumps(config)
    assert_refused(path, "model_config", *parts, error=CheckpointError)


def test_strides_as_an_int_are_read(tmp_path):
    path = copy_of("edsr_x2_keras2.h5", tmp_path)
    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        config["config"]["layers"][2]["config"]["strides"] = 2
        f.attrs["model_config"] = json.dumps(config)
    assert_refused(path, "'conv2d_1' has strides (2, 2)")


@pytest.mark.parametrize("kind", ["group", "string", "compound", "int", "shape"])
def test_weight_of_the_wrong_kind(tmp_path, kind):
    path = copy_of("srresnet_x4_keras2.h5", tmp_path)
    layer, weight, where = weights(path)[0]
    replace(path, where, kind)
    want = {"group": "is a group, not a dataset", "string": "is a string dataset",
            "compound": "is a compound dataset", "int": "is an integer dataset",
            "shape": "does not fit"}[kind]
    assert_refused(path, repr(layer), want)


@pytest.mark.parametrize("attr", ["layer_names", "weight_names"])
def test_name_lists(tmp_path, attr):
    path = copy_of("wdsr_a_x2_tf2.h5", tmp_path)
    with h5py.File(path, "r+") as f:
        owner = f if attr == "layer_names" else f[weights(path)[0][0]]
        owner.attrs[attr] = np.arange(3)
    assert_refused(path, attr, "not a list of strings", error=CheckpointError)


def test_the_initialized_flag_must_be_a_number(tmp_path):
    path = copy_of("wdsr_a_x2_tf2.h5", tmp_path)
    where = next(w for _, name, w in weights(path) if "initialized" in name)
    replace(path, where, "string")
    assert_refused(path, "initialized", "is a string dataset", error=CheckpointError)


# ----------------------------------------------------------------------------- fuzz


def replace(path, where, kind):
    """Replaces the dataset at `where` by another kind of object."""
    with h5py.File(path, "r+") as f:
        old = f[where]
        shape, values = old.shape, old[()]
        del f[where]
        if kind == "group":
            f.create_group(where)
        elif kind == "string":
            f[where] = np.array(["x"] * max(1, int(np.prod(shape))), dtype=h5py.string_dtype())
        elif kind == "compound":
            f.create_dataset(where, shape=shape, dtype=[("a", "f4"), ("b", "i4")])
        elif kind == "int":
            f[where] = np.zeros(shape, dtype="i4")
        elif kind == "shape":  # the axes reversed, or one more element
            wrong = tuple(reversed(shape)) if len(shape) > 1 else (int(np.prod(shape)) + 1,)
            f[where] = np.zeros(wrong, dtype="f4")
        elif kind == "scalar":
            f[where] = np.float32(1)
        elif kind in ("external link", "external storage", "virtual dataset"):
            shape = shape or (1,)  # HDF5 keeps a scalar in the file
            values = np.reshape(values, shape)
            other = path + ".other.h5"
            with h5py.File(other, "w") as g:
                g["data"] = values
            if kind == "external link":
                f[where] = h5py.ExternalLink(other, "/data")
            elif kind == "virtual dataset":
                layout = h5py.VirtualLayout(shape=shape, dtype=values.dtype)
                layout[...] = h5py.VirtualSource(other, "data", shape=shape)
                f.create_virtual_dataset(where, layout)
            else:
                raw = path + ".raw"
                np.asarray(values).tofile(raw)
                f.create_dataset(where, shape=shape, dtype=values.dtype,
                                 external=[(raw, 0, h5py.h5f.UNLIMITED)])
        elif kind == "soft link":
            f[where + "_moved"] = values
            f[where] = h5py.SoftLink(where + "_moved")
        else:
            raise ValueError(kind)


def assert_ports_or_refuses(path):
    try:
        port(path, source="krasserm")
    except SisrError as err:
        message = str(err)
        assert message and "\n" not in message, message
        return message
    return None


HDF5_KINDS = ("group", "string", "compound", "int", "shape", "scalar", "external link",
              "soft link", "virtual dataset", "external storage")


def hdf5_mutants(name):
    cases = [(name, "weight", where, kind) for _, _, where in weights(DATA / name)
             for kind in HDF5_KINDS]
    for attr in ("layer_names", "weight_names"):
        cases += [(name, attr, None, kind)
                  for kind in ("delete", "int", "float", "string", "list", "empty", "bytes")]
    return cases


def attr_mutant(path, attr, kind):
    with h5py.File(path, "r+") as f:
        group = weights_group(f)
        if attr == "weight_names":
            first = group.attrs["layer_names"][0]
            group = group[first.decode() if isinstance(first, bytes) else first]
        value = {"int": np.arange(4), "float": 1.5, "string": "conv2d",
                 "list": np.array(["missing/kernel:0"], dtype="S"),
                 "empty": np.zeros((0,), dtype="S1"), "bytes": np.array([b"\xff\xfe"])}
        if kind == "delete":
            if attr in group.attrs:
                del group.attrs[attr]
        else:
            group.attrs[attr] = value[kind]


def run_hdf5_mutant(tmp_path, name, target, where, kind, index):
    folder = tmp_path / f"h{index}"
    folder.mkdir()
    path = copy_of(name, folder)
    if target == "weight":
        replace(path, where, kind)
    else:
        attr_mutant(path, target, kind)
    message = assert_ports_or_refuses(path)
    flag = "initialized" in where if where else False  # tfa's flag may be any number
    if target == "weight" and not (flag and kind in ("int", "scalar")):
        assert message is not None, (name, where, kind)  # no such weight can be used


def _shape(value):
    """The structure of a JSON value: its keys, classes and leaf types (not their values)."""
    if isinstance(value, dict):
        return {k: (v if k == "class_name" else _shape(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return type(value).__name__


def json_mutants(config):
    """(JSON path, mutation) for every field of the config; of the items of a list that
    have the same structure (sixteen residual blocks' layers), the first alone."""
    out = []

    def walk(value, trail):
        if trail:
            out.extend((trail, kind) for kind in ("drop", "null", "number", "string", "list",
                                                  "dict", "nest", "deep"))
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, trail + (key,))
        elif isinstance(value, list):
            seen = []
            for i, item in enumerate(value):
                shape = _shape(item)
                if shape not in seen:
                    seen.append(shape)
                    walk(item, trail + (i,))

    walk(config, ())
    return out


DEEP = "\u0000deep\u0000"  # replaced by nesting beyond the bound once serialised


def mutate(config, trail, kind):
    """A copy of `config` with the field at `trail` dropped, retyped or nested."""
    config = copy.deepcopy(config)
    parent = config
    for step in trail[:-1]:
        parent = parent[step]
    key, old = trail[-1], parent[trail[-1]]
    if kind == "drop":
        del parent[key]
    elif kind == "nest":  # deep, within the bound
        for _ in range(schema.MAX_DEPTH - len(trail) - 2):
            old = [old]
        parent[key] = old
    else:
        parent[key] = {"null": None, "number": 3, "string": "conv2d_1", "list": [old],
                       "dict": {"name": old}, "deep": DEEP}[kind]
    return config


def run_json_mutant(path, config, trail, kind):
    text = json.dumps(mutate(config, trail, kind))
    text = text.replace(json.dumps(DEEP), "[" * 3000 + "]" * 3000)
    with h5py.File(path, "r+") as f:
        f.attrs["model_config"] = text
    return assert_ports_or_refuses(path)


# fields that the reader reads: every mutation of these is in the default sample
READ_KEYS = {"config", "layers", "output_layers", "name", "class_name", "inbound_nodes",
             "strides", "padding", "activation", "epsilon", "axis", "shared_axes",
             "function", "dilation_rate", "data_format", "kernel_size", "layer"}


def sample(cases, keep, seed):
    return random.Random(seed).sample(cases, min(keep, len(cases)))


def json_cases(name, exhaustive):
    with h5py.File(DATA / name, "r") as f:
        config = json.loads(f.attrs["model_config"])
    cases = json_mutants(config)
    if not exhaustive:
        read = [c for c in cases if isinstance(c[0][-1], str) and c[0][-1] in READ_KEYS]
        cases = sample(read, 90, 1) + sample([c for c in cases if c not in read], 30, 2)
    return config, cases


def fuzz_json(tmp_path, name, exhaustive):
    config, cases = json_cases(name, exhaustive)
    path = copy_of(name, tmp_path)
    refused = 0
    for trail, kind in cases:
        refused += run_json_mutant(path, config, trail, kind) is not None
    assert refused, "no mutant was refused"  # the mutations reach the reader


def fuzz_hdf5(tmp_path, name, exhaustive):
    cases = hdf5_mutants(name)
    if not exhaustive:
        cases = sample(cases, 40, 3)
    for i, case in enumerate(cases):
        run_hdf5_mutant(tmp_path, *case, index=i)


@pytest.mark.parametrize("name", FULL_FILES)
def test_fuzz_model_config(tmp_path, name):
    fuzz_json(tmp_path, name, exhaustive=False)


@pytest.mark.parametrize("name", WEIGHTS_FILES + FULL_FILES[:1])
def test_fuzz_hdf5(tmp_path, name):
    fuzz_hdf5(tmp_path, name, exhaustive=False)


@pytest.mark.slow
@pytest.mark.parametrize("name", FULL_FILES)
def test_fuzz_model_config_exhaustive(tmp_path, name):
    fuzz_json(tmp_path, name, exhaustive=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", WEIGHTS_FILES + FULL_FILES)
def test_fuzz_hdf5_exhaustive(tmp_path, name):
    fuzz_hdf5(tmp_path, name, exhaustive=True)


# ----------------------------------------------------------------------------- CLIs


def test_clis_print_one_line_for_a_malformed_file(tmp_path, monkeypatch, capsys):
    from sisr.port.cli import main as port_main
    from sisr.pretrained.cli import main as pretrained_main

    path = copy_of("edsr_x3_scaled_tf2.h5", tmp_path)
    replace(path, weights(path)[0][2], "compound")
    out = tmp_path / "out.keras"
    assert port_main([path, "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and path in err and "compound dataset" in err, err
    assert not out.exists()

    for key, value in pretrained_env(tmp_path, "tiny-bad", "model.h5").items():
        monkeypatch.setenv(key, value)
    assert pretrained_main(["fetch", "tiny-bad", "--file", path]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines()
              if line.startswith("error:")]
    assert len(errors) == 1 and path in errors[0] and "compound dataset" in errors[0], errors
