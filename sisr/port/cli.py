"""The command line of `python -m sisr.port`."""

import os

import numpy as np

from sisr import cli
from sisr.errors import UsageError
from sisr.port import SOURCES, CheckpointError, PortError, load_state_dict, port_checkpoint
from sisr.port.krasserm import load_krasserm

def make_parser():
    p = cli.parser(
        "sisr.port",
        description="Convert an official PyTorch checkpoint (EDSR-PyTorch, official WDSR, "
                    "BasicSR EDSR) or a model file of the original Keras project "
                    "(--from krasserm) into a sisr .keras model with the same outputs.")
    p.add_argument("weights", help="state_dict file: .npz, .safetensors, or .pt/.pth "
                                   "(needs torch); with --from krasserm a .h5 file")
    p.add_argument("-o", "--output", required=True, help="the .keras file to write")
    p.add_argument("--from", dest="source", default="auto",
                   choices=("auto",) + SOURCES + ("krasserm",),
                   help="the checkpoint's code base (default: detected from the keys; "
                        "krasserm: a krasserm/super-resolution .h5 weights or model file)")
    p.add_argument("--profile", help="training profile (name in profiles/ or JSON path) "
                                     "to check the architecture against")
    p.add_argument("--model", choices=("edsr", "wdsr_a", "wdsr_b", "srresnet", "discriminator"),
                   help="expected sisr model")
    p.add_argument("--scale", type=int, help="expected scale")
    p.add_argument("--num-filters", type=int)
    p.add_argument("--num-res-blocks", type=int)
    p.add_argument("--res-block-expansion", type=int)
    p.add_argument("--res-block-scaling", type=float,
                   help="residual scaling (not stored in checkpoints; if neither given "
                        "nor in --profile, assumed: 0.1 for full EDSR, else none)")
    p.add_argument("--img-range", type=float, default=255.0,
                   help="BasicSR img_range (default 255)")
    p.add_argument("--param-key", help="entry of a wrapped checkpoint to read "
                                       "(e.g. params or params_ema)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    return p


def main(argv=None):
    """CLI entry point; returns the exit status."""
    return cli.main(make_parser(), _main, argv)


def _main(args):
    if not args.output.endswith(".keras"):
        raise UsageError(f"--output must end with .keras, got {args.output!r}")
    if os.path.exists(args.output) and not args.force:
        raise FileExistsError(f"{args.output} exists; pass --force to overwrite it")
    builder_args = {
        "num_filters": args.num_filters, "num_res_blocks": args.num_res_blocks,
        "res_block_expansion": args.res_block_expansion,
        "res_block_scaling": args.res_block_scaling,
    }
    builder_args = {k: v for k, v in builder_args.items() if v is not None}
    try:
        if args.source == "krasserm":
            model = load_krasserm(args.weights, profile=args.profile, scale=args.scale,
                                  model=args.model, **builder_args)
            count, note = f"{sum(1 for layer in model.layers if layer.weights)} layers", None
        else:
            state_dict = load_state_dict(args.weights, param_key=args.param_key)
            ported = port_checkpoint(
                state_dict, source=args.source, scale=args.scale, model=args.model,
                profile=args.profile, img_range=args.img_range, **builder_args)
            model, count = ported.model, f"{len(state_dict)} keys"
            note = ported.scaling_note("--res-block-scaling")
    except (OSError, CheckpointError, PortError) as err:
        # The checkpoint cannot be used as asked: nothing was written.
        message = str(err)
        if not message.startswith(args.weights):
            message = f"{args.weights}: {message}"
        raise UsageError(message) from err

    from sisr.saving import save_model

    save_model(model, args.output)
    params = int(sum(np.prod(w.shape) for w in model.weights))
    print(f"{args.weights} -> {args.output}: {model.name}, {count}, {params:,} parameters"
          + (f", {note}" if note else ""))
    return 0

