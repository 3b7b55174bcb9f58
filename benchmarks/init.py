"""First training steps with Keras' default init vs the official init (run by hand, not in CI).

For each profile (default wdsr-a-32 and edsr-16, x2) and each initialisation, the model is
built with the same seed and trained as `sisr.training.trainer.train` does (same builder,
optimiser, L1 loss, learning rate; float32) on the same demo batches (`--batch-size`
patches of `--lr-patch`, same seed). "keras" re-draws every conv kernel with Glorot uniform
and zeroes every bias, which is what the builders did before they took the official init;
"official" is the builders' init (PyTorch's default conv init, `sisr.initializers`). The
table gives the training loss (L1 on 0..255) at a few steps and the validation PSNR of the
demo validation images (LR centre crops of `--valid-crop`, as the profiles' `valid_crop`;
RGB, DIV2K shave) every `--eval-every` steps, next to bicubic.

    python benchmarks/init.py            # 300 steps, batch 16, LR patch 48 (not run here:
                                         # 24x the work of the reduced run below)
    python benchmarks/init.py --steps 200 --batch-size 4 --lr-patch 24 --eval-every 50
                                         # 15 min on this 2-core machine, shared
"""

import argparse
import os
import sys
import time

# Before TensorFlow is imported, so that its C++ logging stays quiet.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import format_table  # noqa: E402

from sisr import metrics  # noqa: E402
from sisr.data import demo  # noqa: E402
from sisr.imresize import imresize  # noqa: E402
from sisr.inference import resolve  # noqa: E402
from sisr.training.config import resolve as resolve_config  # noqa: E402
from sisr.training.trainer import build_model, make_loss, make_optimizer  # noqa: E402

INITS = ("keras", "official")


def keras_default_init(model):
    """Glorot uniform kernels and zero biases in every conv (Keras' Conv2D defaults)."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            layer.kernel.assign(keras.initializers.GlorotUniform()(layer.kernel.shape))
            layer.bias.assign(np.zeros(layer.bias.shape, "float32"))


def centre_crop(lr, hr, scale, crop):
    """LR centre crop of `crop` (0: the full image) and the matching HR crop."""
    if not crop:
        return lr, hr
    top, left = (lr.shape[0] - crop) // 2, (lr.shape[1] - crop) // 2
    return (lr[top:top + crop, left:left + crop],
            hr[top * scale:(top + crop) * scale, left * scale:(left + crop) * scale])


def validation_psnr(model, images, shave):
    """Mean RGB PSNR of `model` over `(lr, hr)` full images."""
    return float(np.mean([metrics.psnr(hr, resolve(model, lr[None])[0], shave=shave)
                          for lr, hr in images]))


def run(profile, init, args, images):
    """Trains `profile` from `init`; returns (losses by step, [(step, valid psnr)])."""
    config = resolve_config(profile, {"scale": args.scale, "batch_size": args.batch_size,
                               "lr_patch": args.lr_patch})
    keras.utils.set_random_seed(args.seed)
    model = build_model(config)
    if init == "keras":
        keras_default_init(model)
    model.compile(optimizer=make_optimizer(config), loss=make_loss(config))
    batches = demo("train", scale=args.scale).train(
        batch_size=args.batch_size, lr_patch=args.lr_patch, seed=args.seed)
    shave = metrics.div2k_shave(args.scale)
    losses, scores = [], []
    for step, (lr, hr) in enumerate(batches.take(args.steps), start=1):
        losses.append(float(model.train_on_batch(np.float32(lr), np.float32(hr))))
        if step % args.eval_every == 0 or step == args.steps:
            scores.append((step, validation_psnr(model, images, shave)))
            print(f"  {profile} {init}: step {step} loss {losses[-1]:.2f} "
                  f"valid {scores[-1][1]:.2f} dB", flush=True)
    return losses, scores


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", nargs="+", default=["wdsr-a-32", "edsr-16"])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr-patch", type=int, default=48)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--valid-crop", type=int, default=96,
                        help="LR centre crop of the validation images, as the profiles' "
                             "valid_crop (0: full images)")
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.eval_every < 1:
        parser.error("--steps and --eval-every must be at least 1")

    images = [centre_crop(lr, hr, args.scale, args.valid_crop)
              for _, lr, hr in demo("valid", scale=args.scale).pairs()]
    shave = metrics.div2k_shave(args.scale)
    bicubic = np.mean([metrics.psnr(hr, imresize(lr, args.scale), shave=shave)
                       for lr, hr in images])
    shown = sorted({s for s in (1, 2, 3, 5, 10, 20, 50, 100, 200, 300, args.steps)
                    if s <= args.steps})
    rows, started = [], time.perf_counter()
    for profile in args.profiles:
        for init in INITS:
            losses, scores = run(profile, init, args, images)
            rows.append([profile, init]
                        + [f"{losses[s - 1]:.1f}" for s in shown]
                        + [" / ".join(f"{p:.2f}" for _, p in scores), f"{bicubic:.2f}"])
    evals = " / ".join(str(s) for s in sorted({*range(args.eval_every, args.steps + 1,
                                                      args.eval_every), args.steps}))
    crop = f"LR crops {args.valid_crop}" if args.valid_crop else "full images"
    print(f"\nx{args.scale}, batch {args.batch_size}, LR patch {args.lr_patch}, seed "
          f"{args.seed}, float32; validation: {len(images)} demo images, {crop}; "
          f"{time.perf_counter() - started:.0f} s in all")
    print(format_table(
        ["profile", "init"] + [f"loss@{s}" for s in shown]
        + [f"valid PSNR @ {evals}", "bicubic"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
