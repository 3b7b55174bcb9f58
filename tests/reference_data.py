"""Access to the vendored reference data in tests/data/ (provenance: tests/data/README.md)."""

import json
import os

import numpy as np

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
COMPACT = os.path.join(DATA, "compact")
TRAINING = os.path.join(DATA, "training")
# The official code base each manifest "arch" comes from, as `sisr.port` names it.
PORT_SOURCES = {"EDSR": "edsr-pytorch", "WDSR-A": "wdsr", "WDSR-B": "wdsr"}


def read_json(path):
    with open(path) as f:
        return json.load(f)


def compact_manifest():
    return read_json(os.path.join(COMPACT, "manifest.json"))


def compact_names():
    return sorted(compact_manifest()["files"])


def load_compact(name):
    """One compact fixture: (state_dict, NCHW input, official NCHW output, manifest entry)."""
    entry = compact_manifest()["files"][name]
    with np.load(os.path.join(COMPACT, name)) as z:
        state_dict = {k[len("sd/"):]: z[k] for k in z.files if k.startswith("sd/")}
        return state_dict, z["input"], z["output"], entry


def port_args(entry):
    """`sisr.port.port` arguments for a manifest entry; res_scale is not in a state_dict."""
    args = {"source": PORT_SOURCES[entry["arch"]], "scale": entry["scale"]}
    if entry.get("res_scale", 1.0) != 1.0:
        args["res_block_scaling"] = entry["res_scale"]
    return args


def metrics_reference():
    """(arrays, values): the MATLAB-imresize / BasicSR / EDSR metrics reference."""
    manifest = read_json(os.path.join(DATA, "metrics_reference.json"))["metrics_reference"]
    with np.load(os.path.join(DATA, manifest["file"])) as z:
        return dict(z), manifest["values"]


def load_training(name, folder=TRAINING):
    """One training fixture: ({"init" or "stepK": state_dict}, official losses per step)."""
    with np.load(os.path.join(folder, name)) as z:
        states = {}
        for key in z.files:
            if "/" in key:
                prefix, param = key.split("/", 1)
                states.setdefault(prefix, {})[param] = z[key]
        return states, z["losses"]
