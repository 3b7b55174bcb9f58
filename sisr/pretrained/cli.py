"""The command line of `python -m sisr.pretrained` (`list`, `fetch NAME [--file PATH]`)."""

import argparse
import os

from sisr import cli
from sisr.errors import UsageError
from sisr.pretrained import cache, files
from sisr.pretrained.registry import USES, load_registry

_SHORT_ARGS = {"num_res_blocks": "{}b", "num_filters": "{}f", "res_block_expansion": "x{}",
               "res_block_scaling": "rs {}", "num_block": "{}b", "num_conv": "{}c",
               "num_feat": "{}f", "num_grow_ch": "g{}"}


def architecture(entry):
    """A short architecture label, e.g. `edsr 16b 64f`."""
    parts = [fmt.format(entry.args[key]) for key, fmt in _SHORT_ARGS.items()
             if key in entry.args]
    return " ".join([entry.builder] + parts)


def availability(entry):
    """The `cached` column: yes, an installed copy, or what fetching it needs."""
    if cache.is_cached(entry):
        return "yes"
    if os.path.isfile(cache.weights_path(entry)):
        return "no (file in cache)"
    for source in entry.installed:
        if files.installed_copy(source):
            return f"no (installed: {source['pip']})"
    return "no"


def needs(entry):
    """The `needs` column: what fetching the model takes beyond sisr itself."""
    # PyTorch files are read as data (sisr.port.torchfile): torch is never needed.
    return "-" if entry.verifiable else "--file"


def _uses(entry):
    return ", ".join(entry.use) or "-"


def _score(entry):
    if not entry.score:
        return "-"
    return f"{entry.score['psnr']:.2f} dB {entry.score['dataset']} {entry.score['channel']}"


def _list(entries):
    header = ("name", "for", "scale", "parameters", "architecture", "source", "licence",
              "published PSNR", "needs", "cached")
    rows = [(e.name, _uses(e), f"x{e.scale}", f"{e.parameters:,}", architecture(e), e.source,
             e.licence, _score(e), needs(e), availability(e)) for e in entries.values()]
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    for row in [header] + rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip())
    used = {u for e in entries.values() for u in e.use}
    print()
    for word, meaning in USES.items():
        if word in used:
            print(f"for {word}: {meaning}")
    if "real-photographs" not in used:
        print("no model here is trained for real photographs (JPEG, noise, camera blur): "
              "each expects clean, bicubic-downscaled input")
    print(f"cache: {cache.sisr_home()}")
    borders = sorted({(e.score["reference"], e.score["border"]) for e in entries.values()
                      if e.score and "reference" in e.score})
    for reference, border in borders:
        print(f"PSNR from the {reference}: border {border}")
    for e in entries.values():
        for mirror in e.mirrors:
            print(f"{e.name}: {mirror.source}'s copy {mirror.file} is also accepted "
                  "(fetch with --file)")
    manual = [e.name for e in entries.values() if not e.verifiable]
    if manual:
        print(f"needs --file: no known sha256, never downloaded automatically: "
              f"{', '.join(manual)}")


def make_parser():
    p, sub = cli.parser(
        "sisr.pretrained", subcommand="command",
        description="Named pretrained models: list them, fetch (download, verify sha256, "
                    "convert once) into the cache ($SISR_HOME, default ~/.keras/sisr).")
    listing = sub.add_parser("list", help="the named models, their sources and scores, "
                                          "and whether they are cached")
    cli.add_verbose(listing, default=argparse.SUPPRESS)
    fetch = sub.add_parser("fetch", help="download (or take --file), verify and convert "
                                         "a model into the cache")
    cli.add_verbose(fetch, default=argparse.SUPPRESS)
    fetch.add_argument("name", help="a name from `list`")
    fetch.add_argument("--file", metavar="PATH",
                       help="your copy of the weights file (or of the archive holding it); "
                            "its sha256 is checked like a download's")
    fetch.add_argument("--force", action="store_true",
                       help="convert again even if the model is cached")
    return p


def main(argv=None):
    """CLI entry point; returns 0, 1 if fetching failed, 2 on a usage error."""
    return cli.main(make_parser(), _main, argv)


def _main(args):
    entries = load_registry()
    if args.command == "list":
        _list(entries)
        return 0
    if args.name not in entries:
        raise UsageError(f"unknown model {args.name!r}; known: {', '.join(entries)}")
    if args.file is not None and not os.path.isfile(args.file):
        raise UsageError(f"--file {args.file}: no such file")
    path = cache.fetch(args.name, file=args.file, force=args.force)
    entry = entries[args.name]
    print(f"{args.name}: {path} ({architecture(entry)} x{entry.scale}, "
          f"{entry.parameters:,} parameters)")
    return 0
