"""Makes tests/data/training/ and tests/data/basicsr/ by running the official PyTorch code.

Needs torch, numpy and Pillow, and the upstream files (fetched separately, never copied
into this project):

    python tests/data/make_training_fixtures.py \\
        --edsr EDSR-PyTorch/src/model        # edsr.py + common.py, commit 9d3bb0ec
        --wdsr wdsr_ntire2018                # wdsr_a.py + wdsr_b.py, commit 188102dc
        --basicsr BasicSR/basicsr/archs      # edsr_arch.py + arch_util.py, commit 8d56e3a0

It imports neither sisr nor TensorFlow. The upstream modules are loaded unmodified:

- EDSR-PyTorch `EDSR(args)` at its published `rgb_range=255` (16 filters, 2 blocks, x2:
  the baseline's code path, smaller);
- the official `wdsr_a.MODEL` / `wdsr_b.MODEL` (WDSR-B's expansion is 6 in its code), with
  legacy `torch.nn.utils.weight_norm`; the only shim is `Tensor.cuda` returning the tensor
  (its forward calls `.cuda()`), so it runs on a CPU;
- BasicSR's `EDSR` (its package `__init__` pulls in training dependencies: stub modules
  stand in for `basicsr.utils`, `basicsr.utils.registry`, `basicsr.ops.dcn` and
  `torchvision`, none of which the EDSR forward pass uses).

Training fixtures: seeded PyTorch-default init, 5 fixed batches of 4 patches (HR 32x32
cut from sisr/data/demo/train_*.png at seeded positions, LR = 2x2 box average rounded to
uint8), then per batch: zero_grad, L1 loss on the 0..255 scale, backward,
`torch.optim.Adam(lr, betas=(0.9, 0.999), eps=1e-8)` step, as the official training code
(lr 1e-4 for EDSR, 1e-3 for WDSR; for WDSR on weight_g and weight_v).
"""

import argparse
import os
import sys
from argparse import Namespace

import numpy as np
import torch
from fixture_tools import adam, l1_step, load_module, sha256, state, stub_basicsr, write_json
from PIL import Image

SEED = 28
STEPS = 5
BATCH = 4
LR_PATCH = 16
SCALE = 2
HERE = os.path.dirname(os.path.abspath(__file__))
DEMO = os.path.join(HERE, "..", "..", "sisr", "data", "demo")
DIV2K_MEAN = (0.4488, 0.4371, 0.4040)


def batches(rng):
    """STEPS batches of (lr, hr) uint8 NCHW patches from the demo training images."""
    names = sorted(n for n in os.listdir(DEMO) if n.startswith("train_") and n.endswith(".png"))
    images = [np.asarray(Image.open(os.path.join(DEMO, n)).convert("RGB")) for n in names]
    hr_size = LR_PATCH * SCALE
    lrs, hrs = [], []
    for _ in range(STEPS):
        lr_b, hr_b = [], []
        for _ in range(BATCH):
            img = images[rng.integers(len(images))]
            y = rng.integers(img.shape[0] - hr_size + 1)
            x = rng.integers(img.shape[1] - hr_size + 1)
            hr = img[y:y + hr_size, x:x + hr_size].astype(np.float64)
            lr = hr.reshape(LR_PATCH, SCALE, LR_PATCH, SCALE, 3).mean(axis=(1, 3))
            hr_b.append(hr.astype(np.uint8).transpose(2, 0, 1))
            lr_b.append(np.round(lr).astype(np.uint8).transpose(2, 0, 1))
        lrs.append(np.stack(lr_b))
        hrs.append(np.stack(hr_b))
    return np.stack(lrs), np.stack(hrs)


def train(module, lrs, hrs, lr):
    """The official training step, STEPS times; returns (losses, states after each step)."""
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = adam(params, lr)
    losses, states = [], []
    for lr_b, hr_b in zip(lrs, hrs):
        losses.append(l1_step(module, optimizer, lr_b, hr_b))
        states.append(state(module))
    return np.asarray(losses, np.float32), states


def save_training(path, initial, losses, states):
    arrays = {f"init/{k}": v for k, v in initial.items()}
    for step, sd in enumerate(states, 1):
        arrays.update({f"step{step}/{k}": v for k, v in sd.items()})
    arrays["losses"] = losses
    np.savez_compressed(path, **arrays)


def training_fixtures(edsr_dir, wdsr_dir, out):
    os.makedirs(out, exist_ok=True)
    lrs, hrs = batches(np.random.default_rng(SEED))
    np.savez_compressed(os.path.join(out, "batches_x2.npz"), lr=lrs, hr=hrs)
    files = {"batches_x2.npz": {"what": "lr (5,4,3,16,16) and hr (5,4,3,32,32) uint8 NCHW"}}

    sys.path.insert(0, os.path.dirname(edsr_dir))  # edsr.py does `from model import common`
    edsr_mod = load_module("model.edsr", os.path.join(edsr_dir, "edsr.py"))
    wdsr_a = load_module("wdsr_a", os.path.join(wdsr_dir, "wdsr_a.py"))
    wdsr_b = load_module("wdsr_b", os.path.join(wdsr_dir, "wdsr_b.py"))
    torch.Tensor.cuda = lambda self, *args, **kwargs: self  # CPU shim for WDSR's forward

    wdsr_args = dict(scale=[SCALE], n_colors=3, res_scale=1.0, r_mean=DIV2K_MEAN[0],
                     g_mean=DIV2K_MEAN[1], b_mean=DIV2K_MEAN[2])
    configs = {
        "edsr_f16_b2_x2.npz": (
            "EDSR", 1e-4, lambda: edsr_mod.EDSR(Namespace(
                n_resblocks=2, n_feats=16, scale=[SCALE], rgb_range=255, n_colors=3,
                res_scale=1.0)),
            {"n_feats": 16, "n_resblocks": 2, "rgb_range": 255, "res_scale": 1.0}),
        "wdsr_a_f8_b2_x2.npz": (
            "WDSR-A", 1e-3, lambda: wdsr_a.MODEL(Namespace(
                n_resblocks=2, n_feats=8, block_feats=32, **wdsr_args)),
            {"n_feats": 8, "block_feats": 32, "n_resblocks": 2, "res_scale": 1.0}),
        "wdsr_b_f16_b2_x2.npz": (
            "WDSR-B", 1e-3, lambda: wdsr_b.MODEL(Namespace(
                n_resblocks=2, n_feats=16, **wdsr_args)),
            {"n_feats": 16, "expand": 6, "linear": 0.8, "n_resblocks": 2, "res_scale": 1.0}),
    }
    for i, (name, (arch, lr, make, config)) in enumerate(sorted(configs.items())):
        torch.manual_seed(SEED + i)
        module = make()
        initial = state(module)
        losses, states = train(module, lrs, hrs, lr)
        save_training(os.path.join(out, name), initial, losses, states)
        files[name] = {"arch": arch, "scale": SCALE, "config": config, "learning_rate": lr,
                       "torch_seed": SEED + i, "losses": [float(x) for x in losses]}
    return files


def basicsr_fixture(basicsr_dir, out):
    """A small seeded BasicSR EDSR: its state_dict, an input and its output (on [0, 1])."""
    os.makedirs(out, exist_ok=True)
    stub_basicsr()
    load_module("basicsr.archs.arch_util", os.path.join(basicsr_dir, "arch_util.py"))
    arch = load_module("basicsr.archs.edsr_arch", os.path.join(basicsr_dir, "edsr_arch.py"))

    torch.manual_seed(SEED)
    config = {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 16, "num_block": 2,
              "upscale": 2, "res_scale": 1, "img_range": 255.0}
    model = arch.EDSR(**config).eval()
    rng = np.random.default_rng(SEED)
    x = rng.integers(0, 256, size=(1, 3, 12, 16)).astype(np.float32)
    with torch.no_grad():
        y = model(torch.from_numpy(x / 255.0)).numpy().astype(np.float32)
    name = "edsr_f16_b2_x2.npz"
    arrays = {f"sd/{k}": v for k, v in state(model).items()}
    np.savez_compressed(os.path.join(out, name), input=x, output=y, **arrays)
    return {name: {"arch": "BasicSR EDSR", "config": config, "torch_seed": SEED,
                   "input": "(1,3,12,16) NCHW integers 0..255; fed to the model as x / 255",
                   "output": "the model's float32 output, NCHW, on BasicSR's [0, 1] scale"}}


def write_manifest(out, files, upstream, script_files):
    for name, entry in files.items():
        entry["sha256"] = sha256(os.path.join(out, name))
    manifest = {"generator": "tests/data/make_training_fixtures.py", "seed": SEED,
                "torch": torch.__version__, "numpy": np.__version__,
                "upstream": upstream, "upstream_file_sha256": script_files, "files": files}
    write_json(os.path.join(out, "manifest.json"), manifest)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edsr", required=True, help="EDSR-PyTorch's src/model folder")
    parser.add_argument("--wdsr", required=True, help="wdsr_ntire2018 checkout")
    parser.add_argument("--basicsr", required=True, help="BasicSR's basicsr/archs folder")
    parser.add_argument("--out", default=HERE)
    args = parser.parse_args(argv)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)

    edsr_files = {f"EDSR-PyTorch/src/model/{n}": sha256(os.path.join(args.edsr, n))
                  for n in ("edsr.py", "common.py")}
    wdsr_files = {f"wdsr_ntire2018/{n}": sha256(os.path.join(args.wdsr, n))
                  for n in ("wdsr_a.py", "wdsr_b.py")}
    basicsr_files = {f"BasicSR/basicsr/archs/{n}": sha256(os.path.join(args.basicsr, n))
                     for n in ("edsr_arch.py", "arch_util.py")}
    training = os.path.join(args.out, "training")
    write_manifest(training, training_fixtures(args.edsr, args.wdsr, training), {
        "EDSR": "sanghyun-son/EDSR-PyTorch 9d3bb0ec620ea2ac1b5e5e7a32b0133fbba66fd2 "
                "src/model/edsr.py src/model/common.py",
        "WDSR": "JiahuiYu/wdsr_ntire2018 188102dca86757a4bd02df83f9ae4e5014cbcd8e "
                "wdsr_a.py wdsr_b.py"}, {**edsr_files, **wdsr_files})
    basicsr = os.path.join(args.out, "basicsr")
    write_manifest(basicsr, basicsr_fixture(args.basicsr, basicsr), {
        "BasicSR": "XPixelGroup/BasicSR 8d56e3a045f9fb3e1d8872f92ee4a4f07f886b0a "
                   "basicsr/archs/edsr_arch.py basicsr/archs/arch_util.py"}, basicsr_files)
    return 0


if __name__ == "__main__":
    sys.exit(main())
