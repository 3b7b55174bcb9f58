"""Inference: one compiled forward pass per model, shared by `resolve`, `sisr.upscaling`
and `sisr.evaluate`; float32 in, clip + round, uint8 out.

`resolve`, `resolve_single` and `sisr.upscale_image` all return NumPy uint8 arrays (ready
for `PIL.Image.fromarray`); `compiled_forward` is the tensor-level building block."""

import functools
import weakref

import numpy as np
import tensorflow as tf

from sisr.errors import UsageError

# The compiled forward pass of each model; weak keys, and the function holds only a weak
# reference to its model, so that the cache keeps no model alive.
_FORWARD = weakref.WeakKeyDictionary()


def own_function(python_function, *args, **kwargs):
    """`tf.function(functools.partial(python_function, *args), **kwargs)`.

    TensorFlow counts "triggered tf.function retracing" per Python code object, which every
    closure made by one `def` shares: one function per model, each traced once, would be
    reported as retracing once a few models have run. A partial object has no code of its
    own, so TensorFlow counts the traces of each function made here apart.
    """
    return tf.function(functools.partial(python_function, *args), **kwargs)


def _run(model_ref, lr):
    return tf.cast(model_ref()(lr, training=False), tf.float32)


def compiled_forward(model):
    """The compiled forward pass of `model`: float32 (batch, H, W, 3) in, unrounded float32
    SR out. Made once per model; its shape-polymorphic signature traces once for every
    image size and batch."""
    fn = _FORWARD.get(model)
    if fn is None:
        fn = own_function(_run, weakref.ref(model), input_signature=[
            tf.TensorSpec([None, None, None, 3], tf.float32)])
        _FORWARD[model] = fn
    return fn


def to_uint8(sr):
    """Clip to [0, 255], round half to even, uint8: how every sisr output is quantised."""
    return tf.cast(tf.round(tf.clip_by_value(sr, 0.0, 255.0)), tf.uint8)


def _as_batch(lr_batch, argument):
    if isinstance(lr_batch, tf.Tensor):
        lr_batch = lr_batch.numpy()
    array = np.asarray(lr_batch)
    if array.ndim != 4 or array.shape[-1] != 3:
        raise UsageError(
            f"{argument} must be RGB images of shape (batch, height, width, 3), "
            f"got shape {array.shape}"
        )
    if min(array.shape[:3]) < 1:
        raise UsageError(f"{argument} is empty: shape {array.shape}")
    return tf.convert_to_tensor(array, tf.float32)


def resolve(model, lr_batch, precision="float32", scale=None):
    """Super-resolves a batch of LR images on the [0, 255] scale.

    Args:
        model: a sisr generator (any functional Keras model mapping [0, 255] RGB to
            [0, 255] RGB).
        lr_batch: array-like of shape (batch, height, width, 3), uint8 or float.
        precision: "float32", or "bfloat16" to run a mixed copy of the model whose
            precision-critical layers stay float32 (`sisr.precision`; faster on CPUs with
            bfloat16 instructions, see benchmarks/README.md for the fidelity measured).
        scale: the scale of a multi-scale model (MDSR) to run; checked against a
            single-scale model's.

    Returns:
        A NumPy uint8 array of shape (batch, scale*height, scale*width, 3).
    """
    from sisr.precision import inference_copy

    from sisr.model.registry import single_scale

    runner = inference_copy(single_scale(model, scale), precision)
    return to_uint8(compiled_forward(runner)(_as_batch(lr_batch, "lr_batch"))).numpy()


def resolve_single(model, lr, precision="float32", scale=None):
    """Super-resolves one LR image of shape (height, width, 3), uint8 or float; returns a
    NumPy uint8 array of shape (scale*height, scale*width, 3), as `resolve` does for a
    batch and `sisr.upscale_image` for an image of any size and channel layout. `scale`
    picks one scale of a multi-scale model (MDSR)."""
    array = lr.numpy() if isinstance(lr, tf.Tensor) else np.asarray(lr)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise UsageError(f"lr must be an RGB image of shape (height, width, 3), got {array.shape}")
    return resolve(model, array[None], precision, scale)[0]
