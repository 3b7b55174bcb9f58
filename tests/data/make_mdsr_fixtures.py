"""Makes tests/data/mdsr/ by running EDSR-PyTorch's official MDSR.

Needs torch and numpy, and the upstream files (fetched separately, never copied into this
project):

    python tests/data/make_mdsr_fixtures.py --edsr EDSR-PyTorch/src/model [--seed 31]
        # mdsr.py + common.py

It imports neither sisr nor TensorFlow. The upstream `MDSR(args)` is loaded unmodified,
at `rgb_range` 255 (its MeanShift holds the real DIV2K mean), `--scale 2+3+4`, 16
filters, 2 blocks; every conv bias (MeanShift excepted) is perturbed by N(0, 0.5) so that
biases matter. Per scale index i (`set_scale(i)`): the official output for a
(1, 3, 12, 16) integer image, and the official training from that state on 2 batches of 2
random integer patches at that scale (LR 8x8): zero_grad, L1 loss on the 0..255 scale,
backward, `torch.optim.Adam(lr=1e-4, betas=(0.9, 0.999), eps=1e-8)` step, as EDSR-PyTorch
trains; only the parameters of that scale's path (the others get no gradient) are stored
after each step. Then, from the same state, a mixed run of one Adam over all parameters
with the scale indices `SEQUENCE` (a branch left out of a batch has no gradient:
PyTorch >= 2's `zero_grad` sets gradients to None and Adam skips them): its losses and
final state_dict.
"""

import argparse
import json
import os
import sys
from argparse import Namespace

import numpy as np
import torch
from fixture_tools import adam, l1_step, load_module, sha256, state, write_json

HERE = os.path.dirname(os.path.abspath(__file__))
SCALES = (2, 3, 4)
CONFIG = {"n_feats": 16, "n_resblocks": 2, "rgb_range": 255, "scale": list(SCALES)}
STEPS, BATCH, LR_PATCH, LEARNING_RATE = 2, 2, 8, 1e-4
# Scale indices of the mixed run: one Adam over every parameter, a scale per batch.
SEQUENCE = (0, 2, 1, 1, 0, 2)


def make(edsr_dir, seed):
    sys.path.insert(0, os.path.dirname(edsr_dir))  # mdsr.py does `from model import common`
    mdsr = load_module("model.mdsr", os.path.join(edsr_dir, "mdsr.py"))
    # From 9d3bb0e on, MDSR looks its download URL up by configuration (r16f64, r80f64).
    if hasattr(mdsr, "url"):
        mdsr.url.setdefault(f"r{CONFIG['n_resblocks']}f{CONFIG['n_feats']}", "")
    torch.manual_seed(seed)
    module = mdsr.MDSR(Namespace(n_colors=3, **CONFIG))
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("bias") and "mean" not in name:
                p.add_(0.5 * torch.randn_like(p))
    return module


def fixture(module, seed):
    rng = np.random.default_rng(seed)
    arrays = {f"sd/{k}": v for k, v in state(module).items()}
    image = rng.integers(0, 256, (1, 3, 12, 16)).astype(np.float32)
    arrays["input"] = image
    module.eval()
    with torch.no_grad():
        for i, s in enumerate(SCALES):
            module.set_scale(i)
            arrays[f"output_x{s}"] = module(torch.from_numpy(image)).numpy()
    initial = {k: v.detach().clone() for k, v in module.state_dict().items()}
    for i, s in enumerate(SCALES):
        module.load_state_dict(initial)
        module.set_scale(i)
        module.train()
        params = [p for p in module.parameters() if p.requires_grad]
        optimizer = adam(params, LEARNING_RATE)
        lrs = rng.integers(0, 256, (STEPS, BATCH, 3, LR_PATCH, LR_PATCH)).astype(np.uint8)
        hrs = rng.integers(0, 256, (STEPS, BATCH, 3, LR_PATCH * s, LR_PATCH * s))
        hrs = hrs.astype(np.uint8)
        losses = []
        for lr_b, hr_b in zip(lrs, hrs):
            losses.append(l1_step(module, optimizer, lr_b, hr_b))
            trained = {n for n, p in module.named_parameters() if p.grad is not None}
        arrays[f"train_x{s}/lr"], arrays[f"train_x{s}/hr"] = lrs, hrs
        arrays[f"train_x{s}/losses"] = np.asarray(losses, np.float32)
        final = state(module)
        arrays.update({f"train_x{s}/sd/{k}": final[k] for k in sorted(trained)})
    module.load_state_dict(initial)
    module.train()
    optimizer = adam([p for p in module.parameters() if p.requires_grad], LEARNING_RATE)
    losses = []
    for k, i in enumerate(SEQUENCE):
        s = SCALES[i]
        lr_b = rng.integers(0, 256, (BATCH, 3, LR_PATCH, LR_PATCH)).astype(np.uint8)
        hr_b = rng.integers(0, 256, (BATCH, 3, LR_PATCH * s, LR_PATCH * s)).astype(np.uint8)
        module.set_scale(i)
        losses.append(l1_step(module, optimizer, lr_b, hr_b))
        arrays[f"mixed/lr_{k}"], arrays[f"mixed/hr_{k}"] = lr_b, hr_b
    arrays["mixed/indices"] = np.asarray(SEQUENCE, np.int64)
    arrays["mixed/losses"] = np.asarray(losses, np.float32)
    arrays.update({f"mixed/sd/{k}": v for k, v in state(module).items()})
    return arrays


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edsr", required=True, help="EDSR-PyTorch's src/model folder")
    parser.add_argument("--seed", type=int, default=31)
    parser.add_argument("--out", default=os.path.join(HERE, "mdsr"))
    args = parser.parse_args(argv)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    name = f"mdsr_f16_b2_seed{args.seed}.npz"
    path = os.path.join(args.out, name)
    np.savez_compressed(path, **fixture(make(args.edsr, args.seed), args.seed))
    manifest_path = os.path.join(args.out, "manifest.json")
    manifest = {"generator": "tests/data/make_mdsr_fixtures.py", "files": {}}
    if os.path.isfile(manifest_path):
        with open(manifest_path) as f:
            manifest = json.load(f)
    manifest.update({
        "torch": torch.__version__, "numpy": np.__version__,
        "upstream": "sanghyun-son/EDSR-PyTorch src/model/mdsr.py (commit "
                    "4f5e2ced93ebb21b42c8568b044c143a4be4a651) src/model/common.py "
                    "(commit 9d3bb0ec620ea2ac1b5e5e7a32b0133fbba66fd2)",
        "upstream_file_sha256": {f"EDSR-PyTorch/src/model/{n}": sha256(
            os.path.join(args.edsr, n)) for n in ("mdsr.py", "common.py")},
    })
    manifest["files"][name] = {
        "arch": "MDSR", "seed": args.seed, "config": CONFIG, "bias_noise": 0.5,
        "learning_rate": LEARNING_RATE, "steps": STEPS, "batch": BATCH, "lr_patch": LR_PATCH,
        "mixed_sequence": list(SEQUENCE),
        "sha256": sha256(path)}
    write_json(manifest_path, manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
