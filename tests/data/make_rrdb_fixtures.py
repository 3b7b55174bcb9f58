"""Makes tests/data/rrdb/ by running the official RRDBNet and SRVGGNetCompact code.

Needs torch and numpy, and the upstream files (fetched separately, never copied into this
project):

    python tests/data/make_rrdb_fixtures.py \\
        --basicsr BasicSR/basicsr/archs        # rrdbnet_arch.py + arch_util.py
        --realesrgan Real-ESRGAN/realesrgan/archs   # srvgg_arch.py
        --esrgan ESRGAN                        # RRDBNet_arch.py (the original code)
        [--out DIR] [--seed N] [--size H W]

It imports neither sisr nor TensorFlow. The upstream modules are loaded unmodified; stub
modules stand in for `basicsr.utils`, `basicsr.utils.registry`, `basicsr.ops.dcn` and
`torchvision` (BasicSR's package `__init__` pulls in training dependencies that the
forward passes do not use).

Every network gets seeded non-default weights: the official initialisation, then every
parameter plus N(0, 0.02^2) noise (PReLU slopes N(0.25, 0.1^2)), so that biases and slopes
are not their defaults. Inputs are integers 0..255 fed as x / 255 (the official networks
work on [0, 1]); outputs are stored multiplied by 255, on sisr's scale. x2 RRDBNet inputs
have even sizes (the official pixel_unshuffle asserts it). `.pth` files of some of these
state_dicts, in the layouts published files have, test reading them (`torch_files`).
"""

import argparse
import collections
import os
import sys

import numpy as np
import torch
from fixture_tools import load_module, sha256, stub_basicsr, write_json

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 21
SIZE = (11, 13)


def load_upstream(basicsr_dir, realesrgan_dir, esrgan_dir):
    stub_basicsr()
    load_module("basicsr.archs.arch_util", os.path.join(basicsr_dir, "arch_util.py"))
    rrdb = load_module("basicsr.archs.rrdbnet_arch", os.path.join(basicsr_dir, "rrdbnet_arch.py"))
    srvgg = load_module("srvgg_arch", os.path.join(realesrgan_dir, "srvgg_arch.py"))
    esrgan = load_module("RRDBNet_arch", os.path.join(esrgan_dir, "RRDBNet_arch.py"))
    return rrdb, srvgg, esrgan


def perturb(model, generator):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if isinstance(dict(model.named_modules()).get(name.rsplit(".", 1)[0]),
                          torch.nn.PReLU):
                p.copy_(0.25 + 0.1 * torch.randn(p.shape, generator=generator))
            else:
                p.add_(0.02 * torch.randn(p.shape, generator=generator))
    return model


def run(model, x):
    with torch.no_grad():
        return (model(torch.from_numpy(x / 255.0).float()).numpy() * 255.0).astype(np.float32)


def cases(rrdb, srvgg, esrgan):
    """(file name, architecture, config, constructor)."""
    return [
        ("basicsr_rrdb_f12_b2_g6_x4.npz", "BasicSR RRDBNet",
         {"num_in_ch": 3, "num_out_ch": 3, "scale": 4, "num_feat": 12, "num_block": 2,
          "num_grow_ch": 6}, rrdb.RRDBNet),
        ("basicsr_rrdb_f12_b2_g6_x2.npz", "BasicSR RRDBNet",
         {"num_in_ch": 3, "num_out_ch": 3, "scale": 2, "num_feat": 12, "num_block": 2,
          "num_grow_ch": 6}, rrdb.RRDBNet),
        ("basicsr_rrdb_f8_b1_g4_x2.npz", "BasicSR RRDBNet",
         {"num_in_ch": 3, "num_out_ch": 3, "scale": 2, "num_feat": 8, "num_block": 1,
          "num_grow_ch": 4}, rrdb.RRDBNet),
        ("esrgan_rrdb_f8_b1_g4_x4.npz", "ESRGAN RRDBNet",
         {"in_nc": 3, "out_nc": 3, "nf": 8, "nb": 1, "gc": 4}, esrgan.RRDBNet),
        ("srvgg_f8_c3_prelu_x4.npz", "SRVGGNetCompact",
         {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 8, "num_conv": 3, "upscale": 4,
          "act_type": "prelu"}, srvgg.SRVGGNetCompact),
        ("srvgg_f8_c2_prelu_x2.npz", "SRVGGNetCompact",
         {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 8, "num_conv": 2, "upscale": 2,
          "act_type": "prelu"}, srvgg.SRVGGNetCompact),
        ("srvgg_f8_c2_relu_x3.npz", "SRVGGNetCompact",
         {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 8, "num_conv": 2, "upscale": 3,
          "act_type": "relu"}, srvgg.SRVGGNetCompact),
    ]


def make(out, upstream, seed, size):
    os.makedirs(out, exist_ok=True)
    files = {}
    rng = np.random.default_rng(seed)
    for i, (name, arch, config, cls) in enumerate(cases(*upstream)):
        torch.manual_seed(seed + i)
        generator = torch.Generator().manual_seed(seed + 100 + i)
        model = perturb(cls(**config), generator).eval()
        h, w = size
        if config.get("scale") == 2:  # the official pixel_unshuffle needs even sizes
            h, w = h + h % 2, w + w % 2
        x = rng.integers(0, 256, size=(1, 3, h, w)).astype(np.float32)
        y = run(model, x)
        arrays = {f"sd/{k}": v.detach().numpy().astype(np.float32)
                  for k, v in model.state_dict().items()}
        np.savez_compressed(os.path.join(out, name), input=x, output=y, **arrays)
        files[name] = {"arch": arch, "config": config, "torch_seed": seed + i,
                       "input": f"(1,3,{h},{w}) NCHW integers 0..255; fed as x / 255",
                       "output": "the official float32 output x 255, NCHW (sisr's scale)",
                       "sha256": sha256(os.path.join(out, name))}
    return files


def torch_files(out, seed):
    """PyTorch checkpoint files of the .npz fixtures' state_dicts, as published files are
    laid out: BasicSR's legacy (non-zip) format with `params` and `params_ema`, zip files
    with a bare state_dict, and a generator saved beside a discriminator."""
    def state(name):
        with np.load(os.path.join(out, name)) as z:
            return {k[3:]: torch.from_numpy(z[k]) for k in z.files if k.startswith("sd/")}

    generator = torch.Generator().manual_seed(seed)
    rrdb = state("basicsr_rrdb_f8_b1_g4_x2.npz")
    srvgg = state("srvgg_f8_c3_prelu_x4.npz")
    made = {
        "basicsr_rrdb_f8_b1_g4_x2_legacy.pth": (
            {"params": {k: v * 0.5 for k, v in rrdb.items()}, "params_ema": rrdb},
            ("BasicSR legacy format (as scripts/publish_models.py saves): params = 0.5 x "
            "params_ema, params_ema = the state_dict of basicsr_rrdb_f8_b1_g4_x2.npz"), False),
        "srvgg_f8_c3_prelu_x4.pth": (
            collections.OrderedDict(srvgg), ("zip format, the bare state_dict of "
            "srvgg_f8_c3_prelu_x4.npz"), True),
        "esrgan_rrdb_f8_b1_g4_x4.pth": (
            collections.OrderedDict(state("esrgan_rrdb_f8_b1_g4_x4.npz")),
            "zip format, the bare state_dict of esrgan_rrdb_f8_b1_g4_x4.npz", True),
        "generator_and_discriminator.pth": (
            {"params": srvgg, "params_d": {
                "conv0.weight": torch.randn((4, 3, 3, 3), generator=generator),
                "conv0.bias": torch.zeros(4)}},
            ("zip format: params = the state_dict of srvgg_f8_c3_prelu_x4.npz beside a "
            "discriminator's params_d"), True),
    }
    files = {}
    for name, (obj, what, zipped) in made.items():
        torch.save(obj, os.path.join(out, name), _use_new_zipfile_serialization=zipped)
        files[name] = {"holds": what, "sha256": sha256(os.path.join(out, name))}
    return files


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--basicsr", required=True, help="BasicSR's basicsr/archs folder")
    parser.add_argument("--realesrgan", required=True, help="Real-ESRGAN's realesrgan/archs")
    parser.add_argument("--esrgan", required=True, help="the original ESRGAN checkout")
    parser.add_argument("--out", default=os.path.join(HERE, "rrdb"))
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--size", type=int, nargs=2, default=SIZE, metavar=("H", "W"))
    args = parser.parse_args(argv)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    sources = {"BasicSR/basicsr/archs/rrdbnet_arch.py": (args.basicsr, "rrdbnet_arch.py"),
               "BasicSR/basicsr/archs/arch_util.py": (args.basicsr, "arch_util.py"),
               "Real-ESRGAN/realesrgan/archs/srvgg_arch.py": (args.realesrgan, "srvgg_arch.py"),
               "ESRGAN/RRDBNet_arch.py": (args.esrgan, "RRDBNet_arch.py")}
    upstream = load_upstream(args.basicsr, args.realesrgan, args.esrgan)
    files = make(args.out, upstream, args.seed, tuple(args.size))
    files.update(torch_files(args.out, args.seed))
    manifest = {
        "generator": "tests/data/make_rrdb_fixtures.py", "seed": args.seed,
        "torch": torch.__version__, "numpy": np.__version__,
        "upstream": {
            "BasicSR": "XPixelGroup/BasicSR 323cc143d4813648c9c1b21008d545f2be4bf811 "
                       "basicsr/archs/rrdbnet_arch.py; arch_util.py as tests/data/basicsr",
            "Real-ESRGAN": "xinntao/Real-ESRGAN 696e1a6741c912db9d566a162cada43763e57756 "
                           "realesrgan/archs/srvgg_arch.py",
            "ESRGAN": "xinntao/ESRGAN d274b11e25f93cb8fc81b65fe40115e52c08d51b "
                      "RRDBNet_arch.py"},
        "upstream_file_sha256": {k: sha256(os.path.join(*v)) for k, v in sources.items()},
        "files": files}
    write_json(os.path.join(args.out, "manifest.json"), manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
