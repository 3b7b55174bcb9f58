"""Makes tests/data/rcan_rdn/ by running the official PyTorch RCAN and RDN code.

Needs torch and numpy, and the upstream files (fetched separately, never copied into this
project):

    python tests/data/make_rcan_rdn_fixtures.py \\
        --edsr EDSR-PyTorch/src/model        # rcan.py, rdn.py, common.py
        --basicsr BasicSR/basicsr/archs      # rcan_arch.py, arch_util.py
        [--out DIR]                          # tests/data/rcan_rdn by default

It imports neither sisr nor TensorFlow. The upstream modules are loaded as files:

- EDSR-PyTorch `RCAN(args)` (rgb_range 255, and 1 for one file) and `RDN(args)`. RDN's
  configurations (D, C, G) are a literal table in `RDN.__init__` ('A': (20, 6, 32), 'B':
  (16, 8, 64)); to run a small network the table gets one more entry, 'T', added to the
  source text before it is compiled (nothing else changes; the sha256 recorded is that of
  the unmodified file);
- BasicSR's `RCAN` (stub modules stand in for its package `__init__`, `basicsr.utils`,
  its registry, `basicsr.ops.dcn` and `torchvision`, which RCAN's forward does not use).

Port fixtures (`<name>.npz`): the seeded PyTorch-default init, then every parameter
perturbed (kernels x (1 + 0.2 N(0, 1)), biases + 0.05 N(0, 1)) so that no default value is
left; `sd/<key>` the state_dict (float32, OIHW), `input` (1, 3, 8, 10) NCHW integers
0..255, `output` the official model's float32 output, NCHW (EDSR-PyTorch: on the 0..255
scale; BasicSR and rgb_range 1: on [0, 1], for `input / 255`).

Training fixtures (`train_<name>.npz`): the seeded PyTorch-default init (unperturbed, as
training starts), then on the first 3 of the 5 batches of
tests/data/training/batches_x2.npz, per batch:
zero_grad, L1 loss on the 0..255 scale, backward, `torch.optim.Adam(lr 1e-4, betas (0.9,
0.999), eps 1e-8)`, as EDSR-PyTorch's trainer defaults; `init/<key>`, `step<k>/<key>`,
`losses`.

Parameter counts: the official modules at their published sizes (RCAN 10 groups of 20
blocks, 64 features, reduction 16; RDN configurations A and B, G0 64), in the manifest.
"""

import argparse
import os
import sys
from argparse import Namespace

import numpy as np
import torch
from fixture_tools import adam, l1_step, load_module, sha256, state, stub_basicsr, write_json

SEED = 20
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "rcan_rdn")
BATCHES = os.path.join(HERE, "training", "batches_x2.npz")
TINY_RDN = (3, 2, 4)  # D, C, G of the 'T' entry
RCAN_TINY = {"n_resgroups": 2, "n_resblocks": 2, "n_feats": 8, "reduction": 4}
RDN_TINY_G0 = 8
INPUT_SHAPE = (1, 3, 8, 10)
STEPS = 3  # of the 5 batches


def perturb(module, generator):
    """Every trainable parameter moved off PyTorch's default init (MeanShift stays)."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if not p.requires_grad:
                continue
            noise = torch.randn(p.shape, generator=generator)
            if name.endswith("bias"):
                p.add_(0.05 * noise)
            else:
                p.mul_(1 + 0.2 * noise)


def forward_fixture(out, name, make, config, scale, rng, unit=False):
    """`unit`: the model takes [0, 1] images (BasicSR; EDSR-PyTorch at rgb_range 1)."""
    torch.manual_seed(SEED + scale)
    model = make()
    perturb(model, torch.Generator().manual_seed(SEED + scale))
    model.eval()
    x = rng.integers(0, 256, size=INPUT_SHAPE).astype(np.float32)
    with torch.no_grad():
        y = model(torch.from_numpy(x / 255.0 if unit else x)).numpy().astype(np.float32)
    np.savez_compressed(os.path.join(out, name), input=x, output=y,
                        **{f"sd/{k}": v for k, v in state(model).items()})
    return {"config": config, "scale": scale, "torch_seed": SEED + scale,
            "output_scale": "[0, 1] for input / 255" if unit else "0..255",
            "output_shape": list(y.shape)}


def train_fixture(out, name, make, config):
    with np.load(BATCHES) as z:
        lrs, hrs = z["lr"], z["hr"]
    torch.manual_seed(SEED)
    module = make()
    initial = state(module)
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = adam(params, 1e-4)
    arrays = {f"init/{k}": v for k, v in initial.items()}
    losses = []
    for step, (lr_b, hr_b) in enumerate(zip(lrs[:STEPS], hrs[:STEPS]), 1):
        losses.append(l1_step(module, optimizer, lr_b, hr_b))
        arrays.update({f"step{step}/{k}": v for k, v in state(module).items()})
    arrays["losses"] = np.asarray(losses, np.float32)
    np.savez_compressed(os.path.join(out, name), **arrays)
    return {"config": config, "scale": 2, "torch_seed": SEED, "learning_rate": 1e-4,
            "losses": [float(v) for v in losses]}


def count(module):
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edsr", required=True, help="EDSR-PyTorch's src/model folder")
    parser.add_argument("--basicsr", required=True, help="BasicSR's basicsr/archs folder")
    parser.add_argument("--out", default=OUT)
    args = parser.parse_args(argv)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    out = args.out
    os.makedirs(out, exist_ok=True)

    sys.path.insert(0, os.path.dirname(args.edsr))  # `from model import common`
    rcan_mod = load_module("model.rcan", os.path.join(args.edsr, "rcan.py"))
    rdn_path = os.path.join(args.edsr, "rdn.py")
    with open(rdn_path) as f:
        rdn_source = f.read()
    entry = "'B': (16, 8, 64),"
    if rdn_source.count(entry) != 1:
        raise SystemExit(f"{rdn_path}: expected the configuration table entry {entry}")
    rdn_source = rdn_source.replace(entry, entry + f" 'T': {TINY_RDN},")
    rdn_mod = load_module("model.rdn", rdn_path, rdn_source)
    stub_basicsr()
    load_module("basicsr.archs.arch_util", os.path.join(args.basicsr, "arch_util.py"))
    basicsr = load_module("basicsr.archs.rcan_arch", os.path.join(args.basicsr, "rcan_arch.py"))

    def rcan(scale, rgb_range=255, **sizes):
        return lambda: rcan_mod.RCAN(Namespace(
            **{**RCAN_TINY, **sizes}, scale=[scale], rgb_range=rgb_range, n_colors=3,
            res_scale=1.0))

    def rdn(scale, config="T", G0=RDN_TINY_G0):
        return lambda: rdn_mod.RDN(Namespace(scale=[scale], G0=G0, RDNkSize=3,
                                             RDNconfig=config, n_colors=3))

    def basicsr_rcan(scale):
        return lambda: basicsr.RCAN(3, 3, num_feat=8, num_group=2, num_block=2,
                                    squeeze_factor=4, upscale=scale, img_range=255.0)

    rng = np.random.default_rng(SEED)
    files = {}
    for scale in (2, 3, 4, 8):
        files[f"rcan_x{scale}.npz"] = {"arch": "EDSR-PyTorch RCAN", **forward_fixture(
            out, f"rcan_x{scale}.npz", rcan(scale), {**RCAN_TINY, "rgb_range": 255}, scale,
            rng)}
        files[f"basicsr_rcan_x{scale}.npz"] = {"arch": "BasicSR RCAN", **forward_fixture(
            out, f"basicsr_rcan_x{scale}.npz", basicsr_rcan(scale),
            {"num_feat": 8, "num_group": 2, "num_block": 2, "squeeze_factor": 4,
             "img_range": 255.0}, scale, rng, unit=True)}
    files["rcan_rgb1_x2.npz"] = {"arch": "EDSR-PyTorch RCAN", **forward_fixture(
        out, "rcan_rgb1_x2.npz", rcan(2, rgb_range=1), {**RCAN_TINY, "rgb_range": 1}, 2, rng,
        unit=True)}
    tiny = dict(zip(("D", "C", "G"), TINY_RDN), G0=RDN_TINY_G0)
    for scale in (2, 3, 4):
        files[f"rdn_x{scale}.npz"] = {"arch": "EDSR-PyTorch RDN", **forward_fixture(
            out, f"rdn_x{scale}.npz", rdn(scale), tiny, scale, rng)}
    files["train_rcan_x2.npz"] = {"arch": "EDSR-PyTorch RCAN", **train_fixture(
        out, "train_rcan_x2.npz", rcan(2), {**RCAN_TINY, "rgb_range": 255})}
    files["train_rdn_x2.npz"] = {"arch": "EDSR-PyTorch RDN", **train_fixture(
        out, "train_rdn_x2.npz", rdn(2), tiny)}
    for name, item in files.items():
        item["sha256"] = sha256(os.path.join(out, name))

    counts = {}
    for scale in (2, 3, 4, 8):
        counts[f"rcan_x{scale}"] = count(rcan(scale, n_resgroups=10, n_resblocks=20,
                                              n_feats=64, reduction=16)())
    for config in ("A", "B"):
        for scale in (2, 3, 4):
            counts[f"rdn_{config}_x{scale}"] = count(rdn(scale, config, 64)())

    upstream = {
        "EDSR-PyTorch": "sanghyun-son/EDSR-PyTorch 9d3bb0ec620ea2ac1b5e5e7a32b0133fbba66fd2 "
                        "src/model/rcan.py src/model/rdn.py "
                        "src/model/common.py",
        "BasicSR": "XPixelGroup/BasicSR 6846f1689f0d736e332f6454f3a24b98eac731d4 "
                   "basicsr/archs/rcan_arch.py basicsr/archs/arch_util.py"}
    files_run = {f"EDSR-PyTorch/src/model/{n}": sha256(os.path.join(args.edsr, n))
                 for n in ("rcan.py", "rdn.py", "common.py")}
    files_run.update({f"BasicSR/basicsr/archs/{n}": sha256(os.path.join(args.basicsr, n))
                      for n in ("rcan_arch.py", "arch_util.py")})
    manifest = {"generator": "tests/data/make_rcan_rdn_fixtures.py", "seed": SEED,
                "torch": torch.__version__, "numpy": np.__version__, "upstream": upstream,
                "upstream_file_sha256": files_run, "rdn_tiny_config_entry": list(TINY_RDN),
                "official_parameter_counts": counts, "files": files}
    write_json(os.path.join(out, "manifest.json"), manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
