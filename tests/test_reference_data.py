"""tests/data/ holds exactly the files its manifests list, with the listed checksums."""

import hashlib
import os

import numpy as np
import pytest

from reference_data import DATA, compact_manifest, load_compact, read_json

# Fixtures made by tests/data/make_training_fixtures.py, each folder with its manifest.json
GENERATED = ("training", "basicsr")
DOCUMENTATION = {"README.md", "metrics_reference.json", "make_training_fixtures.py",
                 os.path.join("compact", "manifest.json")} | {
                     os.path.join(folder, "manifest.json") for folder in GENERATED}


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def listed():
    """{path relative to tests/data: sha256} from both manifests."""
    files = {os.path.join("compact", name): entry["sha256"]
             for name, entry in compact_manifest()["files"].items()}
    ref = read_json(os.path.join(DATA, "metrics_reference.json"))["metrics_reference"]
    files[ref["file"]] = ref["sha256"]
    for folder in GENERATED:
        entries = read_json(os.path.join(DATA, folder, "manifest.json"))["files"]
        files.update({os.path.join(folder, name): entry["sha256"]
                      for name, entry in entries.items()})
    return files


def test_checksums_match_the_manifests():
    files = listed()
    assert len(files) == 13 + 4 + 1
    for name, expected in files.items():
        assert sha256(os.path.join(DATA, name)) == expected, name


# tests/data/krasserm/ holds files made by the original Keras project's code, with their
# own README (provenance) and maker script; tests/test_krasserm.py checks them.
OWN_PROVENANCE = ("krasserm",)


def test_every_data_file_is_listed():
    present = {os.path.relpath(os.path.join(root, name), DATA)
               for root, _, names in os.walk(DATA) for name in names
               if os.path.relpath(root, DATA).split(os.sep)[0] not in OWN_PROVENANCE}
    assert present == set(listed()) | DOCUMENTATION


def test_readme_states_every_checksum():
    with open(os.path.join(DATA, "README.md")) as f:
        readme = f.read()
    for name, digest in listed().items():
        assert digest in readme, name


@pytest.mark.parametrize("name", sorted(compact_manifest()["files"]))
def test_compact_fixtures_hold_what_the_manifest_says(name):
    state_dict, x, y, entry = load_compact(name)
    assert x.shape == (1, 3, 12, 16)
    assert list(y.shape) == entry["output_shape"]
    assert y.shape[2:] == (12 * entry["scale"], 16 * entry["scale"])
    assert np.array_equal(x, np.round(x)) and 0 <= x.min() and x.max() <= 255
    head = state_dict["head.0.weight" if entry["arch"] == "EDSR" else "head.0.weight_v"]
    assert head.shape[0] == entry["n_feats"]
