"""Makes tests/data/gan_steps/: three GAN training steps of BasicSR's ESRGANModel and
Real-ESRGAN's RealESRGANModel, run by their own `optimize_parameters`.

Needs torch and numpy, and the upstream files (fetched separately, never copied into this
project):

    python tests/data/make_gan_step_fixtures.py --basicsr BasicSR/basicsr \\
        --realesrgan Real-ESRGAN/realesrgan [--out DIR]

with archs/{arch_util,rrdbnet_arch,discriminator_arch,vgg_arch}.py,
losses/{loss_util,basic_loss,gan_loss}.py, models/{base_model,sr_model,srgan_model,
esrgan_model}.py and utils/img_process_util.py under BasicSR/basicsr, and
models/realesrgan_model.py under Real-ESRGAN/realesrgan. It imports neither sisr nor
TensorFlow. The upstream modules are loaded unmodified; stubs stand in for what their
imports pull in and the step does not use (registries, loggers, metrics, the data code:
degradations, DiffJPEG, cropping), for torchvision (`make_gan_fixtures.stub_torchvision`:
VGG19 with `fixture_tools.stand_in_vgg19(seed)` weights) and for cv2, of which USMSharp
only calls getGaussianKernel (OpenCV's formula for its default sigma, written out here).

The step is isolated from BasicSR's data code: a model object is made without `__init__`
and given what `init_training_settings` and `feed_data` would give it (networks, losses,
Adam optimizers, the EMA network, the options and the batches), then
`optimize_parameters(step)` runs three times, each with its batch. Per case (.npz):

* g0/..., d0/...: the initial generator (RRDBNet num_feat=8, num_block=1, num_grow_ch=4,
  BasicSR's init) and discriminator state dicts. The U-Net's u and v are first brought
  to the top singular vectors (200 training forwards without gradient): a training step
  of BasicSR runs the discriminator 3 times (power iterations), sisr's 2; from converged
  vectors the extra iteration changes sigma by float rounding only.
* lq{i}, gt{i}: the LR and HR batches of step i (uint8, NCHW); gt_usm{i} (Real-ESRGAN):
  USMSharp(gt/255) (float32), the target of its pixel and perceptual losses.
* loss{i}/NAME: the step's log_dict (l_g_pix, l_g_percep, l_g_gan, l_d_real, l_d_fake,
  out_d_real, out_d_fake).
* g/..., ema/..., d/...: the generator, its EMA and the discriminator after the 3 steps.
"""

import argparse
import importlib
import os
import sys

import numpy as np
import torch
from fixture_tools import load_module, sha256, state, stub, stub_basicsr, write_json
from make_gan_fixtures import stub_torchvision

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 23
VGG_SEED = 22  # tests/data/gan's stand-in VGG19
STEPS = 3
UPSTREAM = {
    "BasicSR": ("XPixelGroup/BasicSR", "8d56e3a045f9fb3e1d8872f92ee4a4f07f886b0a",
                ("archs/arch_util.py", "archs/rrdbnet_arch.py", "archs/discriminator_arch.py",
                 "archs/vgg_arch.py", "losses/loss_util.py", "losses/basic_loss.py",
                 "losses/gan_loss.py", "models/base_model.py", "models/sr_model.py",
                 "models/srgan_model.py", "models/esrgan_model.py",
                 "utils/img_process_util.py")),
    "Real-ESRGAN": ("xinntao/Real-ESRGAN", "a4abfb2979a7bbff3f69f58f58ae324608821e27",
                    ("models/realesrgan_model.py",)),
}
GENERATOR = {"num_in_ch": 3, "num_out_ch": 3, "scale": 4, "num_feat": 8, "num_block": 1,
             "num_grow_ch": 4}
# The recipes' settings (options/train_realesrgan_x4plus.yml, train_ESRGAN_x4.yml).
REALESRGAN_LAYERS = {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0,
                     "conv5_4": 1.0}
CASES = {
    "realesrgan": {"model": "RealESRGANModel", "disc": "UNetDiscriminatorSN(3, 4)",
                   "hr": 32, "batch": 2, "pixel_weight": 1.0, "gan_weight": 0.1,
                   "layers": REALESRGAN_LAYERS},
    "esrgan": {"model": "ESRGANModel", "disc": "VGGStyleDiscriminator(3, 2, 128)",
               "hr": 128, "batch": 2, "pixel_weight": 1e-2, "gan_weight": 5e-3,
               "layers": {"conv5_4": 1.0}},
}
LR, BETAS, EMA_DECAY = 1e-4, (0.9, 0.99), 0.999


def gaussian_kernel(ksize, sigma):
    """cv2.getGaussianKernel(ksize, sigma) for ksize > 7 (OpenCV computes these, and any
    sigma > 0, from the formula; sigma <= 0 means 0.3 ((ksize - 1) / 2 - 1) + 0.8)."""
    if sigma <= 0:
        sigma = 0.3 * ((ksize - 1) * 0.5 - 1) + 0.8
    x = np.arange(ksize, dtype=np.float64) - (ksize - 1) / 2
    kernel = np.exp(-x ** 2 / (2 * sigma ** 2))
    return (kernel / kernel.sum())[:, None]


def load_upstream(basicsr, realesrgan):
    stub_basicsr()
    stub_torchvision(VGG_SEED)
    stub("cv2", getGaussianKernel=gaussian_kernel)
    stub("tqdm", tqdm=None)
    registry = sys.modules["basicsr.utils.registry"]
    registry.LOSS_REGISTRY = registry.MODEL_REGISTRY = registry.ARCH_REGISTRY
    utils = sys.modules["basicsr.utils"]
    utils.imwrite = utils.tensor2img = None
    stub("basicsr.utils.dist_util", master_only=lambda f: f)
    stub("basicsr.losses", build_loss=None)
    sys.modules["basicsr.archs"].build_network = None
    stub("basicsr.metrics", calculate_metric=None)
    stub("basicsr.models")
    stub("basicsr.models.lr_scheduler")
    stub("basicsr.data")
    stub("basicsr.data.degradations", random_add_gaussian_noise_pt=None,
         random_add_poisson_noise_pt=None)
    stub("basicsr.data.transforms", paired_random_crop=None)
    mods = {}
    for name in ("archs/arch_util", "archs/rrdbnet_arch", "archs/discriminator_arch",
                 "archs/vgg_arch", "losses/loss_util", "losses/basic_loss", "losses/gan_loss",
                 "utils/img_process_util", "models/base_model", "models/sr_model",
                 "models/srgan_model", "models/esrgan_model"):
        mods[name] = load_module("basicsr." + name.replace("/", "."),
                                 os.path.join(basicsr, name + ".py"))
    utils.USMSharp = mods["utils/img_process_util"].USMSharp
    utils.DiffJPEG = None
    stub("realesrgan")
    stub("realesrgan.models")
    mods["realesrgan_model"] = load_module(
        "realesrgan.models.realesrgan_model",
        os.path.join(realesrgan, "models", "realesrgan_model.py"))
    return mods


def smooth_images(rng, n, size):
    """NCHW uint8 images with structure at several scales (random 4x4 blocks, noise)."""
    coarse = rng.integers(0, 256, (n, 3, size // 4, size // 4)).astype(np.float64)
    image = np.repeat(np.repeat(coarse, 4, axis=2), 4, axis=3)
    return np.clip(image + rng.normal(0, 12, image.shape), 0, 255).round().astype(np.uint8)


def tensor01(x):
    return torch.from_numpy(x.astype(np.float32) / 255.0)


def run_case(mods, name, case, rng):
    torch.manual_seed(SEED)
    arch, disc = mods["archs/rrdbnet_arch"], mods["archs/discriminator_arch"]
    net_g = arch.RRDBNet(**GENERATOR)
    if case["model"] == "RealESRGANModel":
        net_d = disc.UNetDiscriminatorSN(3, num_feat=4)
        net_d.train()
        with torch.no_grad():  # power iterations: u, v to the top singular vectors
            for _ in range(200):
                net_d(torch.zeros(1, 3, 16, 16))
        model_class = mods["realesrgan_model"].RealESRGANModel
    else:
        net_d = disc.VGGStyleDiscriminator(3, 2, input_size=128)
        model_class = mods["models/esrgan_model"].ESRGANModel
    arrays = {**{f"g0/{k}": v for k, v in state(net_g).items()},
              **{f"d0/{k}": v for k, v in state(net_d).items()}}

    losses = mods["losses/basic_loss"]
    model = model_class.__new__(model_class)  # no __init__: nothing of BasicSR's setup
    model.opt = {"dist": False, "l1_gt_usm": True, "percep_gt_usm": True,
                 "gan_gt_usm": False}
    model.device = torch.device("cpu")
    model.net_g, model.net_d = net_g.train(), net_d.train()
    model.net_g_ema = arch.RRDBNet(**GENERATOR)
    model.net_g_ema.load_state_dict(net_g.state_dict())  # the pretrained model, as EMA
    model.net_g_ema.eval()
    model.ema_decay = EMA_DECAY
    model.cri_pix = losses.L1Loss(loss_weight=case["pixel_weight"], reduction="mean")
    model.cri_perceptual = losses.PerceptualLoss(
        layer_weights=case["layers"], vgg_type="vgg19", use_input_norm=True,
        range_norm=False, perceptual_weight=1.0, style_weight=0.0, criterion="l1")
    model.cri_gan = mods["losses/gan_loss"].GANLoss(
        "vanilla", real_label_val=1.0, fake_label_val=0.0, loss_weight=case["gan_weight"])
    model.net_d_iters, model.net_d_init_iters = 1, 0
    model.optimizer_g = torch.optim.Adam(net_g.parameters(), lr=LR, weight_decay=0,
                                         betas=BETAS)
    model.optimizer_d = torch.optim.Adam(net_d.parameters(), lr=LR, weight_decay=0,
                                         betas=BETAS)
    usm = mods["utils/img_process_util"].USMSharp()
    hr, batch = case["hr"], case["batch"]
    for step in range(STEPS):
        gt = smooth_images(rng, batch, hr)
        # LR: 4x4 block means of the HR, rounded (a uint8 image as sisr's pipeline gives)
        lq = gt.reshape(batch, 3, hr // 4, 4, hr // 4, 4).mean(axis=(3, 5))
        lq = np.clip(lq + rng.normal(0, 3, lq.shape), 0, 255).round().astype(np.uint8)
        model.lq, model.gt = tensor01(lq), tensor01(gt)
        with torch.no_grad():
            model.gt_usm = usm(model.gt)
        model.optimize_parameters(step + 1)
        arrays[f"lq{step}"], arrays[f"gt{step}"] = lq, gt
        if case["model"] == "RealESRGANModel":  # ESRGANModel has no USM target
            arrays[f"gt_usm{step}"] = model.gt_usm.numpy().astype(np.float32)
        for key, value in model.log_dict.items():
            arrays[f"loss{step}/{key}"] = np.float64(value)
    arrays.update({f"g/{k}": v for k, v in state(net_g).items()})
    arrays.update({f"ema/{k}": v for k, v in state(model.net_g_ema).items()})
    arrays.update({f"d/{k}": v for k, v in state(net_d).items()})
    return arrays


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--basicsr", required=True, help="path of BasicSR's basicsr/")
    parser.add_argument("--realesrgan", required=True, help="path of Real-ESRGAN's realesrgan/")
    parser.add_argument("--out", default=os.path.join(HERE, "gan_steps"))
    args = parser.parse_args(argv)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    # torch.optim imports torch._dynamo, which looks up modules (tqdm, cv2) by spec: before
    # the stubs stand in for them.
    importlib.import_module("torch._dynamo")
    mods = load_upstream(args.basicsr, args.realesrgan)
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(SEED)
    files = {}
    for name, case in CASES.items():
        arrays = run_case(mods, name, case, rng)
        path = os.path.join(args.out, f"{name}.npz")
        np.savez_compressed(path, **arrays)
        files[f"{name}.npz"] = {
            "holds": f"{case['model']}.optimize_parameters x{STEPS}: RRDBNet "
                     f"{GENERATOR}, {case['disc']}, HR {case['hr']}, batch {case['batch']}",
            "settings": {"pixel_l1_weight": case["pixel_weight"],
                         "perceptual_layers": case["layers"], "perceptual_weight": 1.0,
                         "gan": "vanilla", "gan_weight": case["gan_weight"],
                         "adam": {"lr": LR, "betas": list(BETAS)}, "ema_decay": EMA_DECAY,
                         **({"l1_gt_usm": True, "percep_gt_usm": True, "gan_gt_usm": False}
                            if name == "realesrgan" else {})},
            "sha256": sha256(path)}
    upstream_sha = {}
    for label, root in (("BasicSR", args.basicsr), ("Real-ESRGAN", args.realesrgan)):
        for rel in UPSTREAM[label][2]:
            upstream_sha[f"{label}/{os.path.basename(root.rstrip('/'))}/{rel}"] = sha256(
                os.path.join(root, rel))
    write_json(os.path.join(args.out, "manifest.json"), {
        "generator": "tests/data/make_gan_step_fixtures.py",
        "seed": SEED,
        "vgg19_stand_in": f"fixture_tools.stand_in_vgg19({VGG_SEED})",
        "torch": torch.__version__,
        "numpy": np.__version__,
        "upstream": "; ".join(f"{repo} {commit} {', '.join(files_)}"
                              for repo, commit, files_ in UPSTREAM.values()),
        "upstream_file_sha256": upstream_sha,
        "isolated": "optimize_parameters on given batches; feed_data (degradations, "
                    "cropping, the training pair pool) not run; U-Net u, v converged first",
        "files": files,
    })


if __name__ == "__main__":
    sys.exit(main())
