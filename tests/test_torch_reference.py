"""tests/torch_reference.py, a rebuild of the official modules, against the official code's
fixtures: the same outputs (tests/data/compact/) and the same training steps
(tests/data/training/) at the official settings (EDSR rgb_range 255, Adam epsilon 1e-8,
WDSR-B expansion 6).

Optional torch extra (marker `torch`): skips without torch. Imports nothing from sisr or
TensorFlow, so it also runs with torch alone: `pytest --noconftest -m torch
tests/test_torch_reference.py`. The comparison of sisr itself with these fixtures is
tests/test_official_fixtures.py, which always runs.
"""

import os

import numpy as np
import pytest

from reference_data import TRAINING, compact_names, load_compact, load_training, read_json

torch = pytest.importorskip("torch")

import torch_reference  # noqa: E402  (tests/torch_reference.py)

pytestmark = pytest.mark.torch



def build(entry):
    """The torch_reference module of a manifest entry (compact/ or training/)."""
    config = entry.get("config", entry)
    scale, res_scale = entry["scale"], config.get("res_scale", 1.0)
    if entry["arch"] == "EDSR":
        return torch_reference.edsr(scale, feats=config["n_feats"],
                                    blocks=config["n_resblocks"], res_scale=res_scale,
                                    rgb_range=config.get("rgb_range", 255))
    variant = entry["arch"][-1].lower()
    if "block_feats" in config:
        expansion = config["block_feats"] // config["n_feats"]
    else:
        expansion = config.get("expand", 6)  # the official wdsr_b.py fixes 6
    return torch_reference.wdsr(variant, scale, feats=config["n_feats"],
                                blocks=config["n_resblocks"], expansion=expansion,
                                res_scale=res_scale)


def load(module, state_dict):
    module.load_state_dict({k: torch.from_numpy(v) for k, v in state_dict.items()},
                           strict=True)
    return module


@pytest.mark.parametrize("name", compact_names())
def test_rebuild_outputs_equal_official(name):
    state_dict, x, expected, entry = load_compact(name)
    entry = dict(entry, n_resblocks=entry.get("n_resblocks", 2))
    module = load(build(entry), state_dict)
    with torch.no_grad():
        y = module(torch.from_numpy(x)).numpy()
    assert np.abs(y - expected).max() < 1e-3


@pytest.mark.parametrize("name", ["edsr_f16_b2_x2.npz", "wdsr_a_f8_b2_x2.npz",
                                  "wdsr_b_f16_b2_x2.npz"])
def test_rebuild_trains_as_official(name):
    entry = read_json(os.path.join(TRAINING, "manifest.json"))["files"][name]
    states, expected_losses = load_training(name)
    module = load(build(entry), states["init"])
    with np.load(os.path.join(TRAINING, "batches_x2.npz")) as z:
        lrs, hrs = z["lr"].astype(np.float32), z["hr"].astype(np.float32)
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=entry["learning_rate"], betas=(0.9, 0.999),
                                 eps=1e-8)
    losses = []
    for step, (lr, hr) in enumerate(zip(lrs, hrs), 1):
        optimizer.zero_grad()
        loss = torch.nn.functional.l1_loss(module(torch.from_numpy(lr)), torch.from_numpy(hr))
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        official = states[f"step{step}"]
        mine = torch_reference.state_dict_numpy(module)
        assert set(mine) == set(official)
        worst = max(np.abs(mine[k] - v).max() for k, v in official.items())
        # the same computation as the official code: float32 rounding only (at most 0.002
        # of one step seen, WDSR-B)
        assert worst < 0.01 * entry["learning_rate"], step
    np.testing.assert_allclose(losses, expected_losses, rtol=1e-6)
