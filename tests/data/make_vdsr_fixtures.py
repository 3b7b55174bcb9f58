"""Makes tests/data/vdsr/ by running EDSR-PyTorch's VDSR (src/model/vdsr.py + common.py).

Needs torch and numpy, and the upstream files (fetched separately, never copied into this
project):

    python tests/data/make_vdsr_fixtures.py --edsr EDSR-PyTorch/src/model

The one shim: an empty download URL for this configuration in the module's `url` table
(it lists only the published r20f64). It imports neither sisr nor TensorFlow: the one sisr
file it loads, by path, is `sisr/imresize.py` (NumPy only), for MATLAB's bicubic upscaling
of the LR input, which EDSR-PyTorch's data loader gives VDSR pre-made (`input_large`, the
`LR_bicubicL` files).

Upstream: `vdsr.py` and `common.py` at EDSR-PyTorch commit 9d3bb0e (the issue's), whose
VDSR convs have biases (since "fix vdsr bugs", d99e575; the earlier ab6b0ad had none).

- Port fixtures `vdsr_f16_d6_x{2,3,4}.npz`: the official `VDSR(args)` at rgb_range 255,
  16 filters, 6 layers, seeded PyTorch init with every kernel's output channels multiplied
  by gains drawn from U(2, 3) and N(0, 1) added to every bias, so that no default value is
  left (its MeanShift is the real DIV2K mean); `input` a (1, 3, 12, 16) LR image of
  integers 0..255, `input_large` its
  `imresize(input, scale)` (float64 rounded to float32, unrounded to integers), `output`
  the official model's output for `input_large`, NCHW on 0..255. `vdsr_f16_d6_x2_rgb1.npz`:
  the same at rgb_range 1 (the network fed `input_large / 255`, `output` on [0, 1]).
- Training fixture `vdsr_f16_d6_x2_train.npz`: seeded PyTorch-default init, then per batch
  of tests/data/training/batches_x2.npz (LR upscaled by `imresize` as above): zero_grad,
  L1 loss on the 0..255 scale, backward, `torch.optim.Adam(1e-4, betas=(0.9, 0.999),
  eps=1e-8)` step, as the official training code (loss `1*L1`, Adam).
"""

import argparse
import os
import sys
from argparse import Namespace

import numpy as np
import torch
from fixture_tools import adam, l1_step, load_module, sha256, state, write_json

SEED = 31
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
CONFIG = {"n_feats": 16, "n_resblocks": 6, "rgb_range": 255, "n_colors": 3}
LEARNING_RATE = 1e-4


def upscale(imresize, lr_nchw, scale):
    """MATLAB bicubic upscaling of NCHW images, float32, unrounded."""
    out = [imresize(x.transpose(1, 2, 0).astype(np.float64), scale).transpose(2, 0, 1)
           for x in lr_nchw]
    return np.stack(out).astype(np.float32)


def port_fixtures(vdsr, imresize, out):
    files = {}
    for scale, rgb_range in ((2, 255), (3, 255), (4, 255), (2, 1)):
        config = dict(CONFIG, rgb_range=rgb_range)
        torch.manual_seed(SEED + scale)
        seed = SEED + scale + (rgb_range == 1)  # NumPy's: gains, biases and the input
        rng = np.random.default_rng(seed)
        module = vdsr.VDSR(Namespace(**config)).eval()
        with torch.no_grad():
            for name, p in module.named_parameters():
                if name.startswith("body.") and name.endswith(".weight"):
                    gains = rng.uniform(2.0, 3.0, size=(p.shape[0], 1, 1, 1))
                    p.mul_(torch.from_numpy(gains.astype(np.float32)))
                elif name.startswith("body."):
                    p.add_(torch.from_numpy(rng.normal(size=p.shape).astype(np.float32)))
        x = rng.integers(0, 256, size=(1, 3, 12, 16)).astype(np.float32)
        large = upscale(imresize, x, scale)
        fed = large if rgb_range == 255 else large / 255  # rgb_range 1: images on [0, 1]
        with torch.no_grad():
            y = module(torch.from_numpy(fed)).numpy().astype(np.float32)
        name = f"vdsr_f16_d6_x{scale}{'_rgb1' if rgb_range == 1 else ''}.npz"
        arrays = {f"sd/{k}": v for k, v in state(module).items()}
        np.savez_compressed(os.path.join(out, name), input=x, input_large=large, output=y,
                            **arrays)
        files[name] = {"arch": "VDSR", "scale": scale, "config": config,
                       "seed": seed,
                       "weights": "PyTorch init, kernels x U(2, 3) per output channel, "
                                  "biases + N(0, 1)", "output_shape": list(y.shape)}
    return files


def training_fixture(vdsr, imresize, out):
    with np.load(os.path.join(HERE, "training", "batches_x2.npz")) as z:
        lrs, hrs = z["lr"], z["hr"]
    torch.manual_seed(SEED)
    module = vdsr.VDSR(Namespace(**CONFIG))
    initial = state(module)
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = adam(params, LEARNING_RATE)
    losses, states = [], []
    for lr_b, hr_b in zip(lrs, hrs):
        losses.append(l1_step(module, optimizer, upscale(imresize, lr_b, 2), hr_b))
        states.append(state(module))
    arrays = {f"init/{k}": v for k, v in initial.items()}
    for step, sd in enumerate(states, 1):
        arrays.update({f"step{step}/{k}": v for k, v in sd.items()})
    arrays["losses"] = np.asarray(losses, np.float32)
    name = "vdsr_f16_d6_x2_train.npz"
    np.savez_compressed(os.path.join(out, name), **arrays)
    return {name: {"arch": "VDSR", "scale": 2, "config": CONFIG, "torch_seed": SEED,
                   "learning_rate": LEARNING_RATE, "batches": "training/batches_x2.npz",
                   "losses": [float(v) for v in losses]}}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edsr", required=True, help="EDSR-PyTorch's src/model folder")
    parser.add_argument("--out", default=os.path.join(HERE, "vdsr"))
    args = parser.parse_args(argv)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)

    sys.path.insert(0, os.path.dirname(args.edsr))  # vdsr.py does `from model import common`
    vdsr = load_module("model.vdsr", os.path.join(args.edsr, "vdsr.py"))
    # VDSR looks its (empty) download URL up by configuration; it has only r20f64's.
    vdsr.url.setdefault(f"r{CONFIG['n_resblocks']}f{CONFIG['n_feats']}", "")
    imresize_path = os.path.join(ROOT, "sisr", "imresize.py")
    imresize = load_module("matlab_imresize", imresize_path).imresize

    vdsr.url.setdefault("r20f64", "")
    published = vdsr.VDSR(Namespace(n_feats=64, n_resblocks=20, rgb_range=255, n_colors=3))
    trainable = sum(p.numel() for p in published.parameters() if p.requires_grad)
    files = {**port_fixtures(vdsr, imresize, args.out),
             **training_fixture(vdsr, imresize, args.out)}
    for name, entry in files.items():
        entry["sha256"] = sha256(os.path.join(args.out, name))
    manifest = {
        "generator": "tests/data/make_vdsr_fixtures.py", "seed": SEED,
        "torch": torch.__version__, "numpy": np.__version__,
        "upstream": {"VDSR": "sanghyun-son/EDSR-PyTorch 9d3bb0ec620ea2ac1b5e5e7a32b0133fbba66fd2 "
                             "src/model/vdsr.py, src/model/common.py"},
        "upstream_file_sha256": {
            f"EDSR-PyTorch/src/model/{n}": sha256(os.path.join(args.edsr, n))
            for n in ("vdsr.py", "common.py")},
        "sisr_imresize_sha256": sha256(imresize_path),
        "official_r20f64_trainable_parameters": int(trainable),
        "files": files,
    }
    write_json(os.path.join(args.out, "manifest.json"), manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
