"""The command line of `python -m sisr.port`."""

import os

import numpy as np

from sisr import cli
from sisr.errors import UsageError
from sisr.port import CheckpointError, PortError, port_checkpoint
from sisr.port import formats

SCALING_OVERRIDE = "--set res_block_scaling=VALUE"


def make_parser():
    p = cli.parser(
        "sisr.port",
        description="Convert a trained checkpoint (official PyTorch EDSR-PyTorch, WDSR, "
                    "BasicSR EDSR, BasicSR / Real-ESRGAN RRDBNet, original ESRGAN, "
                    "Real-ESRGAN compact, idealo ISR's RDN, OpenCV dnn_superres's ESPCN / FSRCNN / "
                    "LapSRN .pb graphs, or a model file of the original Keras project) into a "
                    "sisr .keras model with the same outputs. The format, model and "
                    "builder arguments are read from the checkpoint.")
    p.add_argument("weights", help="the checkpoint: a state_dict file (.npz, .safetensors, "
                                   ".pt/.pth), a krasserm .h5 file or an OpenCV .pb graph")
    p.add_argument("-o", "--output", required=True, help="the .keras file to write")
    # The formats come from the registry, which loads Keras: checked after parsing
    # (`_check_args`), so that --help does without it.
    p.add_argument("--from", dest="source", default=formats.AUTO, metavar="FORMAT",
                   help="the checkpoint's format (default auto: detected from its keys); "
                        "an unknown name is refused with the list")
    p.add_argument("--profile", help="training profile to check the architecture against "
                                     "(a name python -m sisr.train --help lists, or a JSON "
                                     "path)")
    p.add_argument("--model", help="expected model (a registered name, e.g. edsr)")
    p.add_argument("--scale", type=int, help="expected scale")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                   help="a builder argument (value parsed as JSON, else a string): checked "
                        "if the checkpoint shows it, else used to build, e.g. "
                        "res_block_scaling=0.1 (not stored in checkpoints; if neither given "
                        "nor in --profile, assumed: 0.1 for full EDSR, else none)")
    p.add_argument("--img-range", type=float, default=255.0,
                   help="BasicSR img_range (default 255)")
    p.add_argument("--param-key", help="entry of a wrapped checkpoint to read (e.g. params "
                                       "or params_ema; Real-ESRGAN's formats prefer "
                                       "params_ema)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    return p


def _check_args(p, args):
    choices = formats.choices()
    if args.source not in choices:
        p.error(f"--from {args.source}: unknown format; choose from {', '.join(choices)}")


def main(argv=None):
    """CLI entry point; returns the exit status."""
    return cli.main(make_parser(), _main, argv, check=_check_args)


def _main(args):
    if not args.output.endswith(".keras"):
        raise UsageError(f"--output must end with .keras, got {args.output!r}")
    if os.path.exists(args.output) and not args.force:
        raise FileExistsError(f"{args.output} exists; pass --force to overwrite it")
    from sisr.port import builder_arguments

    builder_args = cli.parse_set(args.set)

    unknown = sorted(set(builder_args) - builder_arguments())
    if unknown:
        raise UsageError(f"--set {', '.join(unknown)}: no registered model has such an "
                         f"argument (known: {', '.join(sorted(builder_arguments()))})")
    try:
        ported = port_checkpoint(
            args.weights, source=args.source, scale=args.scale, model=args.model,
            profile=args.profile, img_range=args.img_range, param_key=args.param_key,
            **builder_args)
    except (OSError, CheckpointError, PortError) as err:
        # The checkpoint cannot be used as asked: nothing was written.
        message = str(err)
        if not message.startswith(args.weights):
            message = f"{args.weights}: {message}"
        raise UsageError(message) from err

    from sisr.saving import save_model

    model, plan = ported.model, ported.plan
    save_model(model, args.output)
    params = int(sum(np.prod(w.shape) for w in model.weights))
    unit = {"state_dict": "keys", "graph": "nodes"}.get(plan.holder, "layers")
    count = f"{len(plan.keys)} {unit}"
    note = ported.scaling_note(SCALING_OVERRIDE)
    print(f"{args.weights} -> {args.output}: {model.name}, {count}, {params:,} parameters"
          + (f", {note}" if note else ""))
    return 0
