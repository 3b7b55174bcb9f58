"""Converts image trees: numpy caches, JPEG-degraded copies, MATLAB-bicubic LR images.

    python -m sisr.convert numpy -i ./DIV2K -o ./DIV2K_BIN
    python -m sisr.convert jpeg --quality 90 -i DIV2K/DIV2K_train_LR_bicubic \\
        -o DIV2K/DIV2K_train_LR_bicubic_jpeg_90
    python -m sisr.convert downscale --scale 4 -i Set5/HR -o Set5/LR_x4
    python -m sisr.convert verify -o ./DIV2K_BIN

The output tree mirrors the input tree (numpy: .npy files; jpeg: .jpg; downscale: .png).
Every output is written to a temporary file and renamed into place, and recorded in
`sisr_manifest.json` with its source's size and mtime and its own size, mtime and SHA-256:
re-running skips current outputs and rebuilds missing, partial, altered or stale ones, so
an interrupted conversion just resumes. Files at output names that the manifest does not
record were not written by sisr and are not replaced without `--force`; `verify` re-hashes
every output.
"""

import argparse
import concurrent.futures
import dataclasses
import logging
import os
import sys
import time

from sisr import cli
from sisr.data.manifest import CHECKSUM, MANIFEST_NAME, OK, Manifest, ManifestError, sha256_file
from sisr.errors import UsageError
from sisr.fileio import is_temp_name
from sisr.imageio import (
    ImageError, inspect_image, is_image_file, is_numpy_file, read_rgb, save_npy, write_image,
)

log = logging.getLogger(__name__)

KINDS = ("numpy", "jpeg", "downscale")
_OUTPUT_EXTENSION = {"numpy": ".npy", "jpeg": ".jpg", "downscale": ".png"}
# Rewriting the manifest after every file would cost O(n^2) bytes on big trees; outputs
# finished after the last save are simply redone after a crash.
_SAVE_INTERVAL_S = 2.0


@dataclasses.dataclass
class _Report:
    """What `convert` or `verify` found; `ok` when none of the lists in `PROBLEMS` (names
    of fields) holds anything."""

    PROBLEMS = ()
    unrecorded: list = dataclasses.field(default_factory=list)  # files sisr did not write

    @property
    def ok(self):
        return not any(getattr(self, name) for name in self.PROBLEMS)


@dataclasses.dataclass
class ConversionResult(_Report):
    """What a conversion did: counts, failed files with reasons, ignored non-image files."""

    PROBLEMS = ("failed",)
    converted: int = 0
    up_to_date: int = 0
    failed: list = dataclasses.field(default_factory=list)
    ignored: list = dataclasses.field(default_factory=list)


def _params(kind, quality, scale, subsampling):
    if kind == "numpy":
        return {}
    if kind == "jpeg":
        if quality is None or not 1 <= int(quality) <= 100:
            raise UsageError(f"jpeg needs --quality between 1 and 100, got {quality!r}")
        return {"quality": int(quality), "subsampling": subsampling or "pillow-default"}
    if kind == "downscale":
        if scale is None or int(scale) < 2 or int(scale) != scale:
            raise UsageError(f"downscale needs an integer --scale >= 2, got {scale!r}")
        return {"scale": int(scale), "method": "matlab-bicubic"}
    raise UsageError(f"unknown conversion {kind!r}: use one of {', '.join(KINDS)}")


def _walk(source, output):
    """(inputs, ignored): input files under `source` (sorted), skipping the output tree."""
    output_real = os.path.realpath(output)
    inputs, ignored = [], []
    for dirpath, dirnames, filenames in os.walk(source):
        dirnames[:] = sorted(
            d for d in dirnames
            if not d.startswith(".") and os.path.realpath(os.path.join(dirpath, d)) != output_real
        )
        for name in sorted(filenames):
            if name.startswith(".") or name == MANIFEST_NAME:
                continue
            path = os.path.join(dirpath, name)
            (inputs if is_image_file(name) or is_numpy_file(name) else ignored).append(path)
    return inputs, ignored


def _remove_stale_temps(output):
    for dirpath, _, filenames in os.walk(output):
        for name in filenames:
            if is_temp_name(name):
                log.info("removing %s left by an interrupted conversion",
                         os.path.join(dirpath, name))
                os.remove(os.path.join(dirpath, name))


def _output_name(kind, rel, suffix):
    stem = os.path.splitext(rel)[0]
    return stem + (suffix if kind == "downscale" else "") + _OUTPUT_EXTENSION[kind]


def _convert_file(kind, params, source_path, output_path):
    """Converts one file; returns (output shape, conversion note or None)."""
    note = inspect_image(source_path).note
    image = read_rgb(source_path)
    if kind == "numpy":
        save_npy(output_path, image)
        return image.shape, note
    if kind == "jpeg":
        subsampling = params["subsampling"]
        write_image(output_path, image, quality=params["quality"],
                    subsampling=None if subsampling == "pillow-default" else subsampling)
        return image.shape, note
    from sisr.imresize import imresize

    scale = params["scale"]
    height, width = image.shape[0] // scale, image.shape[1] // scale
    if height < 1 or width < 1:
        raise ImageError(f"{source_path}: {image.shape[1]}x{image.shape[0]} is smaller than "
                         f"the scale {scale}")
    lr = imresize(image[: height * scale, : width * scale], output_shape=(height, width))
    write_image(output_path, lr)
    return lr.shape, note


def _load_manifest(output, force):
    """The output's manifest (a new one if there is none); an unreadable one is replaced
    only with `force`, since then no file there is known to be sisr's."""
    try:
        return Manifest.load(output) or Manifest(output)
    except ManifestError as err:
        if not force:
            raise UsageError(f"{err}; so no file in {output} is known to be written by sisr: "
                             "re-run with --force to rebuild every output") from None
        log.warning("%s; starting a new manifest (every output will be rebuilt)", err)
        return Manifest(output)


def _plan(kind, source, output, inputs, suffix):
    """{relative output: input path}; refuses two inputs for one output, and outputs that
    are inputs."""
    targets = {}
    for path in inputs:
        targets.setdefault(_output_name(kind, os.path.relpath(path, source), suffix),
                           []).append(path)
    clashes = [f"{' and '.join(paths)} -> {os.path.join(output, rel)}"
               for rel, paths in targets.items() if len(paths) > 1]
    if clashes:
        more = " ..." if len(clashes) > 5 else ""
        raise UsageError("several inputs would be converted to one output: "
                         f"{'; '.join(clashes[:5])}{more}; rename or move all but one")
    input_set = {os.path.realpath(p) for p in inputs}
    for rel in targets:
        if os.path.realpath(os.path.join(output, rel)) in input_set:
            raise UsageError(f"{os.path.join(output, rel)}: output would overwrite an input file")
    return {rel: paths[0] for rel, paths in targets.items()}


def _not_written_by_sisr(manifest, output, rels):
    """Paths in `rels` that exist in `output` but that the manifest does not know."""
    return [os.path.join(output, rel) for rel in rels
            if rel not in manifest.entries and os.path.lexists(os.path.join(output, rel))]


def unrecorded_files(output, manifest):
    """Image and .npy files under `output` that the manifest does not record (the source
    tree, when it lies inside `output`, and other conversions' outputs are skipped)."""
    source = os.path.realpath(manifest.source_root) if manifest.source_root else None

    def skipped(folder):
        return (os.path.realpath(folder) == source
                or os.path.exists(os.path.join(folder, MANIFEST_NAME)))

    found = []
    for dirpath, dirnames, filenames in os.walk(output):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                             and not skipped(os.path.join(dirpath, d)))
        for name in sorted(filenames):
            if name.startswith(".") or not (is_image_file(name) or is_numpy_file(name)):
                continue
            path = os.path.join(dirpath, name)
            if os.path.relpath(path, output) not in manifest.entries:
                found.append(path)
    return found


def _unrecorded_message(path, output):
    message = f"{path}: not recorded in {MANIFEST_NAME} (sisr did not write it)"
    if is_numpy_file(path):
        message += f"; datasets refuse it: delete it or move it out of {output}"
    return message


def _warn_unrecorded(paths, output):
    for path in paths:
        log.warning("%s", _unrecorded_message(path, output))


def convert(kind, source, output, quality=None, scale=None, suffix="", subsampling=None,
            jobs=None, progress=None, force=False):
    """Converts every image under `source` into a mirrored tree under `output`.

    Args:
        kind: "numpy" (uint8 HxWx3 .npy), "jpeg" (`quality` 1-100, optional Pillow
            `subsampling` such as "4:4:4") or "downscale" (MATLAB bicubic by integer
            `scale`, PNG output, `suffix` appended to each file stem, e.g. "x4").
        source, output: folders; `output` may not be `source`.
        jobs: worker threads (default: up to 4, by CPU count).
        progress: show a progress bar (None: only on a terminal).
        force: replace files at output names that the manifest does not record (files
            sisr did not write; refused otherwise), and an unreadable manifest.

    Returns:
        A `ConversionResult`. Unreadable images are listed in `result.failed` (the others
        are still converted); nothing partial is ever left under an output name.

    Raises:
        UsageError before anything is written: bad arguments, two inputs for one output,
        files sisr did not write at output names (without `force`).
    """
    params = _params(kind, quality, scale, subsampling)
    source, output = os.path.abspath(os.fspath(source)), os.path.abspath(os.fspath(output))
    if not os.path.isdir(source):
        raise UsageError(f"{source}: input folder not found")
    if os.path.realpath(source) == os.path.realpath(output):
        raise UsageError(f"{output}: the output folder must differ from the input folder")
    if os.path.exists(output) and not os.path.isdir(output):
        raise UsageError(f"{output}: output exists and is not a folder")
    inputs, ignored = _walk(source, output)
    if not inputs:
        raise UsageError(f"{source}: no images (.png, .jpg, .bmp, .tif, .npy ...) found")
    targets = _plan(kind, source, output, inputs, suffix)
    manifest = _load_manifest(output, force)
    foreign = _not_written_by_sisr(manifest, output, targets)
    if foreign and not force:
        raise UsageError(
            f"{output}: {len(foreign)} file(s) there were not written by sisr and would be "
            f"overwritten: {', '.join(foreign[:5])}{' ...' if len(foreign) > 5 else ''}; "
            "move them away, or re-run with --force to replace them")
    result = ConversionResult(ignored=ignored)
    for path in ignored:
        log.warning("%s: not an image file, skipped", path)

    os.makedirs(output, exist_ok=True)
    _remove_stale_temps(output)
    manifest.source_root = source
    tasks, to_hash = [], []
    for rel_out, path in targets.items():
        code, _ = manifest.status(rel_out, kind, params)
        if code == OK:
            result.up_to_date += 1
            if "sha256" not in manifest.entries[rel_out]:
                to_hash.append(rel_out)  # recorded by an older sisr
            continue
        manifest.mark_pending(rel_out, path, kind, params)
        tasks.append((path, rel_out, os.path.join(output, rel_out)))
    if tasks:
        manifest.save()  # the pending entries, before any output is written

    def work(task):
        path, _, out_path = task
        try:
            shape, note = _convert_file(kind, params, path, out_path)
            return (shape, note, sha256_file(out_path)), None
        except ImageError as err:
            return None, str(err)
        except OSError as err:
            return None, f"{path}: {err}"

    from tqdm import tqdm

    jobs = jobs or min(4, os.cpu_count() or 1)
    last_save = time.monotonic()
    bar = tqdm(total=len(tasks), unit="img", desc=f"{kind} {os.path.basename(output)}",
               disable=(None if progress is None else not progress))
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
            if to_hash:
                log.info("adding checksums to %d outputs recorded without them", len(to_hash))
                paths = [os.path.join(output, rel) for rel in to_hash]
                for rel, digest in zip(to_hash, pool.map(sha256_file, paths)):
                    manifest.add_checksum(rel, digest)
            for task, (done, error) in zip(tasks, pool.map(work, tasks)):
                path, rel_out, out_path = task
                if error:
                    log.error("%s", error)
                    result.failed.append((path, error))
                    if (manifest.entries[rel_out].get("pending")
                            and not os.path.lexists(out_path)):
                        del manifest.entries[rel_out]
                else:
                    shape, note, digest = done
                    if note:
                        log.warning("%s: %s", path, note)
                    manifest.record(rel_out, path, kind, params, shape, note, digest)
                    result.converted += 1
                bar.update(1)
                if time.monotonic() - last_save > _SAVE_INTERVAL_S:
                    manifest.save()
                    last_save = time.monotonic()
    finally:
        bar.close()
        manifest.save()
    result.unrecorded = unrecorded_files(output, manifest)
    _warn_unrecorded(result.unrecorded, output)
    return result


@dataclasses.dataclass
class VerifyResult(_Report):
    """What `verify` found: counts, and (path, sentence) lists of what is wrong."""

    PROBLEMS = ("mismatched", "problems", "unrecorded")
    command: str = ""  # the conversion command that rebuilds missing or deleted outputs
    verified: int = 0
    without_checksum: int = 0
    mismatched: list = dataclasses.field(default_factory=list)
    problems: list = dataclasses.field(default_factory=list)


def verify(output, jobs=None):
    """Re-hashes every output recorded in `output`'s manifest and checks it is current.

    Returns a `VerifyResult`; entries recorded without a checksum (by an older sisr) are
    checked by size only and counted in `without_checksum`.
    """
    output = os.path.abspath(os.fspath(output))
    if not os.path.isdir(output):
        raise UsageError(f"{output}: folder not found")
    try:
        manifest = Manifest.load(output)
    except ManifestError as err:
        raise UsageError(str(err)) from None
    if manifest is None:
        raise UsageError(f"{output}: no {MANIFEST_NAME}, not an output of python -m "
                         "sisr.convert")
    result = VerifyResult(command=manifest.command())
    rels = sorted(manifest.entries)
    jobs = jobs or min(4, os.cpu_count() or 1)
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        statuses = pool.map(lambda rel: manifest.status(rel, verify="always"), rels)
        for rel, (code, problem) in zip(rels, statuses):
            path = os.path.join(output, rel)
            if code == CHECKSUM:
                result.mismatched.append((path, problem))
            elif code != OK:
                result.problems.append((path, problem))
            elif "sha256" in manifest.entries[rel]:
                result.verified += 1
            else:
                result.without_checksum += 1
    result.unrecorded = unrecorded_files(output, manifest)
    return result


def make_parser():
    parser, sub = cli.parser(
        "sisr.convert", subcommand="kind",
        description="Convert image trees: numpy caches, JPEG-degraded copies, MATLAB-bicubic "
                    "LR images. Restartable: current outputs are skipped. 'verify' re-hashes "
                    "the outputs of a conversion.")
    specs = {
        "numpy": "mirror an image tree as uint8 HxWx3 .npy files (fast training cache)",
        "jpeg": "write JPEG-degraded copies (e.g. the bicubic_jpeg_90 track)",
        "downscale": "make LR images with the MATLAB-compatible bicubic imresize",
    }
    for kind, text in specs.items():
        p = sub.add_parser(kind, help=text, description=text)
        cli.add_verbose(p, default=argparse.SUPPRESS)
        p.add_argument("-i", "--input", required=True, help="input folder (searched recursively)")
        p.add_argument("-o", "--output", required=True, help="output folder (mirrored tree)")
        p.add_argument("-j", "--jobs", type=int, default=None, help="worker threads")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
        p.add_argument("--force", action="store_true",
                       help="replace files at output names that sisr did not write (refused "
                            "otherwise), and an unreadable manifest")
        if kind == "jpeg":
            p.add_argument("--quality", type=int, required=True, help="JPEG quality 1-100")
            p.add_argument("--subsampling", default=None,
                           help="chroma subsampling, e.g. 4:4:4 (default: Pillow's 4:2:0)")
        if kind == "downscale":
            p.add_argument("--scale", type=int, required=True, help="integer factor >= 2")
            p.add_argument("--suffix", default="",
                           help="appended to output file stems, e.g. x4 (default: none)")
    text = ("re-hash every output recorded in a conversion's manifest; report altered, "
            "missing and unrecorded files (exit 1 if any)")
    p = sub.add_parser("verify", help=text, description=text)
    cli.add_verbose(p, default=argparse.SUPPRESS)
    p.add_argument("-o", "--output", required=True, help="output folder of a conversion")
    p.add_argument("-j", "--jobs", type=int, default=None, help="worker threads")
    return parser


def main(argv=None):
    """Command-line entry point; returns the exit status."""
    return cli.main(make_parser(), _main, argv, log_level=logging.WARNING)


def _main(args):
    if args.kind == "verify":
        return _verify_main(args)
    result = convert(args.kind, args.input, args.output,
                     quality=getattr(args, "quality", None),
                     scale=getattr(args, "scale", None),
                     suffix=getattr(args, "suffix", ""),
                     subsampling=getattr(args, "subsampling", None),
                     jobs=args.jobs, progress=False if args.quiet else None, force=args.force)
    print(f"{args.kind}: {result.converted} converted, {result.up_to_date} up to date, "
          f"{len(result.failed)} failed, {len(result.ignored)} non-image files skipped "
          f"-> {os.path.abspath(args.output)}")
    for _, error in result.failed:
        print(f"failed: {error}", file=sys.stderr)
    return 0 if result.ok else 1


def _verify_main(args):
    result = verify(args.output, jobs=args.jobs)
    output = os.path.abspath(args.output)
    for path, problem in result.mismatched + result.problems:
        print(f"error: {path}: {problem}", file=sys.stderr)
    for path in result.unrecorded:
        print(f"error: {_unrecorded_message(path, output)}", file=sys.stderr)
    print(f"verify: {result.verified} verified, {len(result.mismatched)} mismatched, "
          f"{len(result.problems)} other problems, {len(result.unrecorded)} unrecorded, "
          f"{result.without_checksum} without checksum -> {output}")
    if result.mismatched or result.problems:
        print("error: to rebuild them, delete the files named above and run "
              f"{result.command}", file=sys.stderr)
    if result.without_checksum:
        print(f"note: {result.without_checksum} outputs were recorded without a checksum "
              "(older sisr); re-running the conversion adds them", file=sys.stderr)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
