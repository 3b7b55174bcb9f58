"""tests/data/ holds exactly the files its manifests list, with the listed checksums."""

import hashlib
import os

import numpy as np
import pytest

from reference_data import DATA, compact_manifest, load_compact, read_json

KRASSERM = os.path.join(DATA, "krasserm")
# Fixtures made by tests/data/make_*_fixtures.py, each folder with its manifest.json
GENERATED = ("training", "basicsr", "vdsr", "rrdb", "mdsr", "rcan_rdn", "isr",
             "degradations", "gan", "opencv_pb", "gan_steps")
DOCUMENTATION = {"README.md", "metrics_reference.json", "make_training_fixtures.py",
                 "make_vdsr_fixtures.py", "make_rrdb_fixtures.py", "make_mdsr_fixtures.py",
                 "make_rcan_rdn_fixtures.py", "make_isr_fixtures.py", "fixture_tools.py",
                 "make_degradation_fixtures.py", "make_gan_fixtures.py",
                 "make_bsrgan_fixtures.py",
                 "make_opencv_pb_fixtures.py",
                 "make_gan_step_fixtures.py",
                 os.path.join("compact", "manifest.json"),
                 os.path.join("krasserm", "README.md"), os.path.join("krasserm", "manifest.json"),
                 os.path.join("krasserm", "make_files.py")} | {
                     os.path.join(folder, "manifest.json") for folder in GENERATED}


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def krasserm_listed():
    """{path relative to tests/data: sha256} of tests/data/krasserm (its own manifest)."""
    return {os.path.join("krasserm", name): entry["sha256"]
            for name, entry in read_json(os.path.join(KRASSERM, "manifest.json"))["files"]
            .items()}


def listed():
    """{path relative to tests/data: sha256} from the manifests."""
    files = {os.path.join("compact", name): entry["sha256"]
             for name, entry in compact_manifest()["files"].items()}
    ref = read_json(os.path.join(DATA, "metrics_reference.json"))["metrics_reference"]
    files[ref["file"]] = ref["sha256"]
    for folder in GENERATED:
        entries = read_json(os.path.join(DATA, folder, "manifest.json"))["files"]
        files.update({os.path.join(folder, name): entry["sha256"]
                      for name, entry in entries.items()})
    return {**files, **krasserm_listed()}


def test_checksums_match_the_manifests():
    files = listed()
    # vdsr/: 5 .npz; rrdb/: 7 .npz, 4 .pth; degradations/: basicsr.npz, bsrgan.npz;
    # gan/: 4 .npz, 1 .pth; opencv_pb/: 4 .pb, reference.npz; gan_steps/: 2 .npz
    assert len(files) == 13 + 4 + 1 + 14 + 5 + 11 + 1 + 14 + 4 + 2 + 5 + 5 + 2
    for name, expected in files.items():
        assert sha256(os.path.join(DATA, name)) == expected, name


def test_every_data_file_is_listed():
    present = {os.path.relpath(os.path.join(root, name), DATA)
               for root, _, names in os.walk(DATA) for name in names
               if "__pycache__" not in root}
    assert present == set(listed()) | DOCUMENTATION


def test_readme_states_every_checksum():
    # Each folder's README: tests/data/README.md, and tests/data/krasserm/README.md for its
    # files (with what made each: the original code, or a re-creation of it).
    with open(os.path.join(DATA, "README.md")) as f:
        readme = f.read()
    with open(os.path.join(KRASSERM, "README.md")) as f:
        krasserm_readme = f.read()
    krasserm = krasserm_listed()
    for name, digest in listed().items():
        assert digest in (krasserm_readme if name in krasserm else readme), name


def test_krasserm_files_say_what_made_them():
    entries = read_json(os.path.join(KRASSERM, "manifest.json"))["files"]
    for name, entry in entries.items():
        assert entry["era"] in name and entry["era"] in ("tf2", "keras2"), name
        recreated = "re-creat" in entry["made"]
        assert recreated == (entry["era"] == "keras2"), name


@pytest.mark.parametrize("name", sorted(compact_manifest()["files"]))
def test_compact_fixtures_hold_what_the_manifest_says(name):
    state_dict, x, y, entry = load_compact(name)
    assert x.shape == (1, 3, 12, 16)
    assert list(y.shape) == entry["output_shape"]
    assert y.shape[2:] == (12 * entry["scale"], 16 * entry["scale"])
    assert np.array_equal(x, np.round(x)) and 0 <= x.min() and x.max() <= 255
    head = state_dict["head.0.weight" if entry["arch"] == "EDSR" else "head.0.weight_v"]
    assert head.shape[0] == entry["n_feats"]
