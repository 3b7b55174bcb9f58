"""Makes tests/data/gan/ by running BasicSR's GAN discriminators and perceptual loss.

Needs torch and numpy, and the upstream files (fetched separately, never copied into this
project):

    python tests/data/make_gan_fixtures.py --basicsr BasicSR/basicsr [--out DIR] [--seed N]

with archs/discriminator_arch.py, archs/vgg_arch.py, losses/basic_loss.py and
losses/loss_util.py under BasicSR/basicsr. It imports neither sisr nor TensorFlow. The
upstream modules are loaded unmodified; stubs stand in for `basicsr.utils.registry` and
for torchvision, whose `models.vgg.vgg19` BasicSR's VGGFeatureExtractor calls: the stub
builds torchvision's VGG19 `features` layer sequence (3x3 convs with padding 1, in-place
ReLU, 2x2 max pooling; configuration "E") with `fixture_tools.stand_in_vgg19(seed)`
weights, since ImageNet weights cannot be downloaded here and the Keras tests rebuild the
same weights from the seed.

Files (each case seeded; see manifest.json):
* unet_sn_f4.npz: UNetDiscriminatorSN(3, num_feat=4) with perturbed weights (N(0, 0.02^2)
  added to every parameter) and u, v after three warm-up training forwards on other
  images; its state_dict then (sd/...: weight_orig, weight_u,
  weight_v, bias), an eval forward (stored u, v), then one training forward (one power
  iteration updates u, v), the u, v after it (sd_after/...) and the gradients of the
  training output's mean with respect to every parameter (grad/...).
* unet_sn_f4_netd.pth: that state_dict as BasicSR saves a discriminator ({"params": ...}).
* unet_sn_f4_noskip.npz: the same without skip connections (eval forward only).
* vgg_disc_f2_128.npz: VGGStyleDiscriminator(3, 2, 128), perturbed weights and BN running
  statistics; eval and training (batch statistics) forwards of a batch of 2.
* perceptual.npz: PerceptualLoss values for three settings on a batch of 2 image pairs,
  and the features of image 0 (HR and SR) at each tap of the first setting.
Inputs are integers 0..255 (uint8, NCHW) fed as x / 255 (BasicSR works on [0, 1]).
"""

import argparse
import os
import sys

import numpy as np
import torch
from fixture_tools import (
    load_module, sha256, stand_in_vgg19, state, stub, stub_basicsr, write_json,
)

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 22
UPSTREAM_COMMIT = "8d56e3a045f9fb3e1d8872f92ee4a4f07f886b0a"
UPSTREAM_FILES = ("archs/discriminator_arch.py", "archs/vgg_arch.py",
                  "losses/basic_loss.py", "losses/loss_util.py")
# torchvision's VGG19 ("E"): channels per conv, "M" = 2x2 max pooling.
VGG19_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
             512, 512, 512, 512, "M")
PERCEPTUAL_SETTINGS = (
    {"layer_weights": {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0,
                       "conv5_4": 1.0},
     "use_input_norm": True, "range_norm": False, "perceptual_weight": 1.0,
     "style_weight": 0.0, "criterion": "l1"},
    {"layer_weights": {"relu1_1": 0.5, "conv2_1": 1.0, "pool3": 2.0},
     "use_input_norm": False, "range_norm": False, "perceptual_weight": 0.7,
     "style_weight": 3.0, "criterion": "l2"},
    {"layer_weights": {"conv3_4": 1.0, "relu4_1": 0.25},
     "use_input_norm": True, "range_norm": False, "perceptual_weight": 0.0,
     "style_weight": 1.0, "criterion": "l1"},
)


def stub_torchvision(vgg_seed):
    """torchvision.models.vgg with a `vgg19` whose features hold the stand-in weights."""
    def vgg19(pretrained=False, **_):
        layers, channels = [], 3
        for item in VGG19_CFG:
            if item == "M":
                layers.append(torch.nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [torch.nn.Conv2d(channels, item, 3, padding=1),
                           torch.nn.ReLU(inplace=True)]
                channels = item
        features = torch.nn.Sequential(*layers)
        convs = [m for m in features if isinstance(m, torch.nn.Conv2d)]
        with torch.no_grad():
            for conv, (_, kernel, bias) in zip(convs, stand_in_vgg19(vgg_seed)):
                conv.weight.copy_(torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()))
                conv.bias.copy_(torch.from_numpy(bias))
        net = torch.nn.Module()
        net.features = features
        return net

    vgg = type(sys)("torchvision.models.vgg")
    vgg.vgg19 = vgg19
    stub("torchvision.models", vgg=vgg)
    sys.modules["torchvision.models.vgg"] = vgg
    sys.modules["torchvision"].models = sys.modules["torchvision.models"]


def load_upstream(basicsr_dir, vgg_seed):
    stub_basicsr()
    stub_torchvision(vgg_seed)
    stub("basicsr.losses")
    disc = load_module("basicsr.archs.discriminator_arch",
                       os.path.join(basicsr_dir, "archs", "discriminator_arch.py"))
    load_module("basicsr.archs.vgg_arch", os.path.join(basicsr_dir, "archs", "vgg_arch.py"))
    load_module("basicsr.losses.loss_util", os.path.join(basicsr_dir, "losses", "loss_util.py"))
    loss = load_module("basicsr.losses.basic_loss",
                       os.path.join(basicsr_dir, "losses", "basic_loss.py"))
    return disc, loss


def perturb(model, generator):
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=generator))
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn(b.shape, generator=generator))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=generator))
    return model


def images(rng, n, h, w):
    """NCHW integers 0..255, stored as uint8."""
    return rng.integers(0, 256, size=(n, 3, h, w)).astype(np.uint8)


def tensor01(x):
    return torch.from_numpy(x.astype(np.float32) / 255.0)


def warm_up(model, rng, steps=3):
    """Training forwards without gradient on other images: the power iteration moves u
    and v from spectral_norm's random start towards the top singular vectors (from the
    random start, sigma is far below the spectral norm and the outputs are huge)."""
    model.train()
    with torch.no_grad():
        for _ in range(steps):
            model(tensor01(images(rng, 1, 16, 16)))


def counts(model):
    params = sum(p.numel() for p in model.parameters())
    buffers = sum(b.numel() for n, b in model.named_buffers()
                  if not n.endswith("num_batches_tracked"))
    return {"parameters": params, "buffers": buffers}


def unet_case(disc, seed, rng, skip):
    torch.manual_seed(seed)
    model = perturb(disc.UNetDiscriminatorSN(3, num_feat=4, skip_connection=skip),
                    torch.Generator().manual_seed(seed + 100))
    warm_up(model, rng)
    x = images(rng, 2, 16, 24)
    xt = tensor01(x)
    arrays = {"input": x, **{f"sd/{k}": v for k, v in state(model).items()}}
    model.eval()
    with torch.no_grad():
        arrays["output_eval"] = model(xt).numpy()
    if skip:
        model.train()
        model.zero_grad()
        out = model(xt)
        out.mean().backward()
        arrays["output_train"] = out.detach().numpy()
        arrays.update({f"sd_after/{k}": v for k, v in state(model).items()
                       if k.endswith(("weight_u", "weight_v"))})
        arrays.update({f"grad/{k}": p.grad.numpy().copy()
                       for k, p in model.named_parameters()})
        model.eval()
        with torch.no_grad():  # the stored u, v of the training forward, no iteration
            arrays["output_eval_after"] = model(xt).numpy()
    return arrays


def vgg_disc_case(disc, seed, rng):
    torch.manual_seed(seed)
    model = perturb(disc.VGGStyleDiscriminator(3, 2, input_size=128),
                    torch.Generator().manual_seed(seed + 100))
    x = images(rng, 2, 128, 128)
    xt = tensor01(x)
    arrays = {"input": x, **{f"sd/{k}": v for k, v in state(model).items()}}
    model.eval()
    with torch.no_grad():
        arrays["output_eval"] = model(xt).numpy()
        model.train()
        arrays["output_train"] = model(xt).numpy()
    return arrays


def perceptual_case(loss_module, rng):
    hr, sr = images(rng, 2, 16, 24), images(rng, 2, 16, 24)
    hrt, srt = tensor01(hr), tensor01(sr)
    arrays = {"hr": hr, "sr": sr}
    for i, setting in enumerate(PERCEPTUAL_SETTINGS):
        loss = loss_module.PerceptualLoss(vgg_type="vgg19", **setting)
        with torch.no_grad():
            percep, style = loss(srt, hrt)  # BasicSR's order: (output, gt)
        arrays[f"setting{i}/percep"] = np.float32(np.nan if percep is None else percep.item())
        arrays[f"setting{i}/style"] = np.float32(np.nan if style is None else style.item())
        if i == 0:
            with torch.no_grad():
                feats = {"hr": loss.vgg(hrt), "sr": loss.vgg(srt)}
            for which, f in feats.items():
                for tap, value in f.items():
                    arrays[f"features/{which}/{tap}"] = value[0].numpy()
    return arrays


def netd_file(out):
    """unet_sn_f4.npz's state_dict as BasicSR saves a discriminator (save_network:
    {"params": state_dict}, zip format), as Real-ESRGAN's published *_netD.pth are."""
    import collections

    name = "unet_sn_f4_netd.pth"
    with np.load(os.path.join(out, "unet_sn_f4.npz")) as z:
        sd = collections.OrderedDict((k[3:], torch.from_numpy(z[k])) for k in z.files
                                     if k.startswith("sd/"))
    torch.save({"params": sd}, os.path.join(out, name))
    return {name: {"holds": "zip format: params = the state_dict of unet_sn_f4.npz",
                   "sha256": sha256(os.path.join(out, name))}}


def param_counts(disc):
    """Parameters and buffers (u, v; BN running statistics) of the default configurations."""
    return {"UNetDiscriminatorSN(3, 64)": counts(disc.UNetDiscriminatorSN(3, 64)),
            "VGGStyleDiscriminator(3, 64, 128)": counts(disc.VGGStyleDiscriminator(3, 64, 128)),
            "VGGStyleDiscriminator(3, 64, 256)": counts(disc.VGGStyleDiscriminator(3, 64, 256))}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--basicsr", required=True, help="BasicSR's basicsr folder")
    parser.add_argument("--out", default=os.path.join(HERE, "gan"))
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    disc, loss = load_upstream(args.basicsr, args.seed)
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    cases = {
        "unet_sn_f4.npz": (lambda: unet_case(disc, args.seed, rng, True),
                           "BasicSR UNetDiscriminatorSN(3, num_feat=4)"),
        "unet_sn_f4_noskip.npz": (lambda: unet_case(disc, args.seed + 1, rng, False),
                                  "BasicSR UNetDiscriminatorSN(3, 4, skip_connection=False)"),
        "vgg_disc_f2_128.npz": (lambda: vgg_disc_case(disc, args.seed + 2, rng),
                                "BasicSR VGGStyleDiscriminator(3, 2, input_size=128)"),
        "perceptual.npz": (lambda: perceptual_case(loss, rng),
                           ("BasicSR PerceptualLoss (VGGFeatureExtractor, vgg19) on "
                            "stand_in_vgg19(seed) weights")),
    }
    files = {}
    for name, (make, what) in cases.items():
        path = os.path.join(args.out, name)
        np.savez_compressed(path, **make())
        files[name] = {"holds": what, "sha256": sha256(path)}
    files["perceptual.npz"]["settings"] = list(PERCEPTUAL_SETTINGS)
    files.update(netd_file(args.out))
    manifest = {
        "generator": "tests/data/make_gan_fixtures.py", "seed": args.seed,
        "vgg19_stand_in": f"fixture_tools.stand_in_vgg19({args.seed})",
        "torch": torch.__version__, "numpy": np.__version__,
        "upstream": f"XPixelGroup/BasicSR {UPSTREAM_COMMIT} "
                    + ", ".join(f"basicsr/{f}" for f in UPSTREAM_FILES),
        "upstream_file_sha256": {f"BasicSR/basicsr/{f}": sha256(os.path.join(args.basicsr, f))
                                 for f in UPSTREAM_FILES},
        "param_counts": param_counts(disc),
        "files": files,
    }
    write_json(os.path.join(args.out, "manifest.json"), manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
