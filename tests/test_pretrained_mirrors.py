"""Registry mirrors: another published copy of an entry's weights in another layout
(BasicSR's conversions of the EDSR-PyTorch files), accepted through `fetch --file`,
checked against the hash prefix in its own name and converted with its own layout.

No network: a temporary registry whose official file cannot be downloaded, and the BasicSR
fixture (tests/data/basicsr/, BasicSR's own EDSR) as the mirror's file.
"""

import hashlib
import json
import os

import numpy as np
import pytest

import sisr.pretrained as pretrained
from reference_data import DATA
from sisr.model import build
from sisr.pretrained import PretrainedError
from sisr.pretrained.cli import main
from sisr.pretrained.registry import DEFAULT_REGISTRY, load_registry

ARGS = {"scale": 2, "num_filters": 16, "num_res_blocks": 2}


def write_npz(path, arrays):
    np.savez(path, **arrays)
    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
    return digest


@pytest.fixture
def mirrored(tmp_path, monkeypatch):
    monkeypatch.setenv("SISR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SISR_OFFLINE", "1")
    with np.load(os.path.join(DATA, "basicsr", "edsr_f16_b2_x2.npz")) as z:
        state = {k[3:]: z[k] for k in z.files if k.startswith("sd/")}
        x, expected = z["input"], z["output"] * 255.0
    plain = tmp_path / "mirror.npz"
    digest = write_npz(plain, state)
    mirror = tmp_path / f"EDSR_tiny_official-{digest[:8]}.npz"
    os.replace(plain, mirror)
    other = tmp_path / "other.npz"
    write_npz(other, {k: v + 1 for k, v in state.items()})
    entry = {
        "description": "tiny EDSR", "builder": "edsr", "args": ARGS, "scale": 2,
        "parameters": build("edsr", **ARGS).count_params(),
        "url": "https://example.invalid/edsr_tiny-0123abcd.pt", "file": "edsr_tiny-0123abcd.pt",
        "source": "tests", "homepage": "https://example.org", "licence": "MIT",
        "converter": "edsr-pytorch", "archive": False, "sha256": None, "installed": [],
        "mirrors": [{"file": mirror.name, "source": "BasicSR", "converter": "basicsr-edsr",
                     "homepage": "https://github.com/XPixelGroup/BasicSR"}],
    }
    registry = tmp_path / "registry.json"
    registry.write_text(json.dumps({"format": 1, "models": {"tiny": entry}}))
    monkeypatch.setenv("SISR_PRETRAINED_REGISTRY", str(registry))
    return {"mirror": mirror, "other": other, "x": x, "expected": expected,
            "registry": registry, "entry": entry}


def test_a_mirror_file_is_verified_and_converted_with_its_own_layout(mirrored, capsys):
    with pytest.raises(PretrainedError, match=f"BasicSR's {mirrored['mirror'].name}"):
        pretrained.fetch("tiny")  # offline: the advice names the mirror's file too
    assert main(["fetch", "tiny", "--file", str(mirrored["other"])]) == 1
    err = capsys.readouterr().err
    assert "wrong sha256" in err and mirrored["mirror"].name in err
    assert main(["fetch", "tiny", "--file", str(mirrored["mirror"])]) == 0
    model = pretrained.load("tiny")
    y = np.asarray(model(mirrored["x"].transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2)
    assert np.abs(y - mirrored["expected"]).max() < 1e-3
    assert main(["list"]) == 0
    assert f"tiny: BasicSR's copy {mirrored['mirror'].name}" in capsys.readouterr().out


def test_malformed_mirrors_are_refused(mirrored):
    for change, message in (({"file": "no-prefix.pth"}, "sha256 prefix"),
                            ({"converter": "nope"}, "mirror converter"),
                            ({"extra": 1}, "needs file, source")):
        entry = dict(mirrored["entry"])
        entry["mirrors"] = [dict(entry["mirrors"][0], **change)]
        mirrored["registry"].write_text(json.dumps({"format": 1, "models": {"tiny": entry}}))
        with pytest.raises(PretrainedError, match=message):
            load_registry()


def test_shipped_edsr_entries_name_the_basicsr_copies():
    entries = load_registry(DEFAULT_REGISTRY)
    expected = {"edsr-baseline-x2": "EDSR_Mx2_f64b16_DIV2K_official-3ba7b086.pth",
                "edsr-baseline-x3": "EDSR_Mx3_f64b16_DIV2K_official-6908f88a.pth",
                "edsr-baseline-x4": "EDSR_Mx4_f64b16_DIV2K_official-0c287733.pth",
                "edsr-x2": "EDSR_Lx2_f256b32_DIV2K_official-be38e77d.pth",
                "edsr-x3": "EDSR_Lx3_f256b32_DIV2K_official-3660f70d.pth",
                "edsr-x4": "EDSR_Lx4_f256b32_DIV2K_official-76ee1c8f.pth"}
    for name, file in expected.items():
        (mirror,) = entries[name].mirrors
        assert (mirror.file, mirror.converter, mirror.source) == (file, "basicsr-edsr",
                                                                   "BasicSR")
    # BasicSR publishes no MDSR
    assert not any(e.mirrors for e in entries.values() if e.builder == "mdsr")
