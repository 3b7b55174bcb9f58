"""Export of sisr models for deployment: TensorFlow SavedModel, LiteRT (.tflite), ONNX.

    from sisr.export import export
    export(model, "edsr_savedmodel", format="saved_model")
    export(model, "edsr.tflite", format="litert", input_size=(96, 96))

    python -m sisr.export edsr.keras --format litert -o edsr.tflite [--input-size H W]

Artifacts (RGB on the [0, 255] scale, NHWC):
- SavedModel: endpoint `serve` (also `serving_default`): float32 images of any size
  -> float32 SR (unclipped, as the Keras model); `serve_uint8`: uint8 -> uint8 SR
  (clipped and rounded, as `sisr.resolve`).
- LiteRT: float32 -> float32, TFLite builtin ops only; dynamic batch/height/width
  (resize the input tensor before allocating) unless `input_size` fixes them.
- ONNX: float32 -> float32 via tf2onnx, when tf2onnx is installed.
Outputs are written to a temporary file or directory first and moved into place, and an
existing output is replaced only with `force=True`.
"""

import importlib.util
import logging
import os
import sys
import tempfile

import numpy as np

from sisr.errors import SisrError
from sisr import cli
from sisr.fileio import atomic_output

__all__ = ["ExportError", "FORMATS", "export", "main", "run_exported"]

log = logging.getLogger(__name__)

FORMATS = ("saved_model", "litert", "onnx")
_SUFFIX = {"litert": ".tflite", "onnx": ".onnx"}


class ExportError(SisrError, RuntimeError):
    """An export that cannot be made (bad arguments, missing tooling, failed conversion)."""


def _input_spec(input_size, dtype="float32"):
    import tensorflow as tf

    height, width = (None, None) if input_size is None else input_size
    return tf.TensorSpec([None, height, width, 3], dtype, name="lr")


def _check_input_size(input_size):
    if input_size is None:
        return None
    size = tuple(input_size)
    if len(size) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                 and v > 0 for v in size):
        raise ExportError(f"input_size must be two positive ints (height, width), "
                          f"got {input_size!r}")
    return tuple(int(v) for v in size)


def _archive(model, input_size, uint8_endpoint=True):
    """A Keras ExportArchive with the float `serve` and the uint8 `serve_uint8` endpoints."""
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(model)

    def serve(lr):
        return tf.cast(model(lr, training=False), tf.float32)

    def serve_uint8(lr):
        sr = serve(tf.cast(lr, tf.float32))
        return tf.cast(tf.round(tf.clip_by_value(sr, 0.0, 255.0)), tf.uint8)

    # The first endpoint is also exported as `serving_default`.
    archive.add_endpoint("serve", serve, input_signature=[_input_spec(input_size)])
    if uint8_endpoint:
        archive.add_endpoint("serve_uint8", serve_uint8,
                             input_signature=[_input_spec(input_size, "uint8")])
    return archive


def _write_saved_model(model, path, input_size):
    _archive(model, input_size).write_out(path, verbose=False)


def _write_litert(model, path, input_size):
    import tensorflow as tf

    # Through a SavedModel, the conversion path TensorFlow documents for Keras 3: a
    # concrete function of the Keras call converts with garbage weights in TF 2.21.
    with tempfile.TemporaryDirectory(prefix="sisr-litert-") as saved_model:
        _archive(model, input_size, uint8_endpoint=False).write_out(saved_model, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
        # Builtin ops only: the file then runs on any LiteRT interpreter, without Flex.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        try:
            flatbuffer = converter.convert()
        except Exception as err:  # the converter raises ConverterError and others
            raise ExportError(f"LiteRT conversion failed: {err}") from err
    with open(path, "wb") as f:
        f.write(flatbuffer)


def _write_onnx(model, path, input_size):
    missing = [m for m in ("tf2onnx", "onnx") if importlib.util.find_spec(m) is None]
    if missing:
        raise ExportError(
            f"ONNX export needs {' and '.join(missing)}, which "
            f"{'is' if len(missing) == 1 else 'are'} not installed: "
            "pip install tf2onnx (and onnxruntime to run the .onnx file)"
        )
    try:
        model.export(path, format="onnx", input_signature=[_input_spec(input_size)],
                     verbose=False)
    except Exception as err:  # tf2onnx raises many types
        raise ExportError(f"ONNX conversion with tf2onnx failed: {err}") from err


_WRITERS = {"saved_model": _write_saved_model, "litert": _write_litert, "onnx": _write_onnx}


def check_output(output, format, force=False, force_name="force=True"):
    """Raises ExportError (or FileExistsError) unless `output` can take an export of
    `format`: the right extension, and nothing there, or with `force` a previous export
    (never another folder or file). `force_name` is what the caller calls `force`."""
    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r}; choose one of "
                          f"{', '.join(FORMATS)}")
    suffix = _SUFFIX.get(format)
    if suffix and not output.endswith(suffix):
        raise ExportError(f"a {format} export is a {suffix} file; got output {output!r}")
    if not os.path.lexists(output):
        return
    if not force:
        raise FileExistsError(f"{output} exists; pass {force_name} to replace it")
    if format == "saved_model":
        ok = os.path.isdir(output) and not os.path.islink(output) and \
            os.path.isfile(os.path.join(output, "saved_model.pb"))
    else:
        ok = os.path.isfile(output) and not os.path.islink(output)
    if not ok:
        kind = "a SavedModel folder" if format == "saved_model" else f"a {_SUFFIX[format]} file"
        raise ExportError(f"{output} exists and is not {kind}; {force_name} only replaces "
                          "a previous export (remove it yourself or choose another output)")


def export(model, output, format="saved_model", input_size=None, force=False, scale=None):
    """Exports a sisr model (or a `.keras` file) as a SavedModel, LiteRT or ONNX file.

    Args:
        model: a `keras.Model`, or the path of a `.keras` file.
        output: the directory (SavedModel) or file (`.tflite`, `.onnx`) to write.
        format: one of `FORMATS`.
        input_size: optional (height, width) to fix the input size (mostly for LiteRT
            runtimes without dynamic shapes); default any size.
        force: replace an existing `output`.
        scale: the scale to export of a multi-scale model (MDSR: an ordinary
            single-scale model of that branch); checked against a single-scale model's.

    Returns:
        The path written.

    Raises:
        FileExistsError: `output` exists and `force` is false.
        ExportError: unknown format, wrong extension, missing tooling, failed conversion.
    """
    output = os.fspath(output)
    check_output(output, format, force)
    input_size = _check_input_size(input_size)
    if isinstance(model, (str, os.PathLike)):
        from sisr.saving import load_model

        model = load_model(model)
    model = _at_scale(model, scale)

    with atomic_output(output, overwrite=force, directory=format == "saved_model") as tmp:
        _WRITERS[format](model, tmp, input_size)
    log.info("exported %s as %s to %s", model.name, format, output)
    return output


def run_exported(path, format, lr):
    """Runs an exported artifact on `lr` (N, H, W, 3) float32; returns float32 SR.

    A helper to check artifacts: SavedModel through `serve`, LiteRT through the
    `ai_edge_litert` interpreter (or `tf.lite.Interpreter` when that is not installed),
    ONNX through onnxruntime.
    """
    lr = np.asarray(lr, np.float32)
    if format == "saved_model":
        import tensorflow as tf

        loaded = tf.saved_model.load(path)  # keep a reference: it owns the variables
        return loaded.serve(tf.constant(lr)).numpy()
    if format == "litert":
        return _run_litert(path, lr)
    if format == "onnx":
        try:
            import onnxruntime
        except ImportError as err:
            raise ExportError("running an .onnx file needs onnxruntime: "
                              "pip install onnxruntime") from err
        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return session.run(None, {name: lr})[0]
    raise ExportError(f"unknown export format {format!r}")


def _run_litert(path, lr):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    interpreter = Interpreter(model_path=path)
    index = interpreter.get_input_details()[0]["index"]
    if tuple(interpreter.get_input_details()[0]["shape"]) != lr.shape:
        interpreter.resize_tensor_input(index, lr.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(index, lr)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def _at_scale(model, scale):
    from sisr.model.registry import single_scale

    try:
        return single_scale(model, scale)
    except ValueError as err:
        raise ExportError(f"{err} (--scale)") from None


def make_parser():
    p = cli.parser(
        "sisr.export",
        description="Export a sisr .keras model as a SavedModel, LiteRT or ONNX file.")
    p.add_argument("model", help="the .keras model file")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("-o", "--output", required=True,
                   help="SavedModel directory, or .tflite / .onnx file")
    p.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"),
                   help="fix the input height and width (default: any size)")
    p.add_argument("--force", action="store_true", help="replace an existing output")
    p.add_argument("--scale", type=int, help="the scale to export of a multi-scale model "
                   "(mdsr); an error if a single-scale model's differs")
    p.add_argument("--check", action="store_true",
                   help="run the artifact on a random image and print its largest "
                        "difference from the Keras model")
    return p


def main(argv=None):
    """CLI entry point; returns the exit status."""
    return cli.main(make_parser(), _main, argv)


def _main(args):
    from sisr.saving import load_model

    with cli.checking():
        check_output(args.output, args.format, args.force, force_name="--force")
        model = _at_scale(load_model(args.model), args.scale)
    export(model, args.output, format=args.format, input_size=args.input_size,
           force=args.force)
    message = f"{args.model} -> {args.output} ({args.format})"
    if args.check:
        height, width = args.input_size or (24, 32)
        lr = np.random.default_rng(0).uniform(0, 255, (1, height, width, 3)).astype(np.float32)
        expected = np.asarray(model(lr, training=False), np.float32)
        got = run_exported(args.output, args.format, lr)
        message += f", max abs difference from Keras {np.abs(got - expected).max():.3g}"
    print(message)
    return 0


if __name__ == "__main__":
    sys.exit(main())
