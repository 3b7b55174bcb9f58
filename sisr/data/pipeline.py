"""tf.data pipelines over a list of LR/HR pairs.

Training: image indices are shuffled every epoch and repeated; for each index a random
LR offset is drawn in TF (stateless, from a per-element seed stream, so a `seed` makes
runs reproducible even with a parallel map), the aligned LR and HR patches are cut in
numpy (memory-mapped for `.npy` caches, so only the touched pages are read), then flipped
and rotated identically in TF, batched and prefetched.
"""

import numpy as np
import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE


def _patch_crop_fn(pairs, scale, lr_patch):
    hr_patch = lr_patch * scale

    def crop(index, top, left):
        pair = pairs[int(index)]
        top, left = int(top), int(left)
        lr = pair.lr.crop(top, left, lr_patch, lr_patch)
        hr = pair.hr.crop(top * scale, left * scale, hr_patch, hr_patch)
        return lr, hr

    return crop


def _augment(lr, hr, seed):
    """Same random horizontal flip and k*90 degree rotation for the LR and HR patch."""
    flip = tf.random.stateless_uniform([], seed=seed + [0, 1]) < 0.5
    turns = tf.random.stateless_uniform([], seed=seed + [0, 2], minval=0, maxval=4,
                                        dtype=tf.int32)
    lr = tf.where(flip, tf.reverse(lr, axis=[1]), lr)
    hr = tf.where(flip, tf.reverse(hr, axis=[1]), hr)
    return tf.image.rot90(lr, turns), tf.image.rot90(hr, turns)


def train_dataset(pairs, scale, batch_size, lr_patch, seed, repeat, augment):
    """Random aligned patch batches `(lr, hr)`, uint8 (B, p, p, 3) and (B, p*s, p*s, 3)."""
    count = len(pairs)
    lr_shapes = tf.constant([pair.lr.shape for pair in pairs], tf.int32)
    crop = _patch_crop_fn(pairs, scale, lr_patch)
    hr_patch = lr_patch * scale

    def load(index, random):
        seed = tf.stack([random, tf.constant(0, tf.int64)])
        room = tf.cast(tf.gather(lr_shapes, index) - lr_patch + 1, tf.float32)
        u = tf.random.stateless_uniform([2], seed=seed)
        offset = tf.minimum(tf.cast(u * room, tf.int32), tf.cast(room, tf.int32) - 1)
        lr, hr = tf.numpy_function(crop, [index, offset[0], offset[1]], [tf.uint8, tf.uint8],
                                   stateful=False)
        lr.set_shape([lr_patch, lr_patch, 3])
        hr.set_shape([hr_patch, hr_patch, 3])
        if augment:
            lr, hr = _augment(lr, hr, seed)
        return lr, hr

    indices = tf.data.Dataset.range(count).shuffle(count, seed=seed,
                                                   reshuffle_each_iteration=True)
    if repeat:
        indices = indices.repeat()
    # One int64 per patch: the stateless seed of its crop offset and augmentation.
    randoms = tf.data.Dataset.random(seed=seed)
    dataset = tf.data.Dataset.zip((indices, randoms))
    dataset = dataset.map(load, num_parallel_calls=AUTOTUNE, deterministic=seed is not None)
    # Static batch shapes when repeating; a single epoch keeps its last, smaller batch.
    dataset = dataset.batch(batch_size, drop_remainder=repeat)
    return dataset.prefetch(AUTOTUNE)


def valid_dataset(pairs, scale, crop):
    """Full images (crop None) or centre crops of LR size `crop`, batch 1, in order."""

    def load(index):
        pair = pairs[int(index)]
        lr = pair.lr.load()
        height, width = lr.shape[:2]
        if crop is None:
            hr = pair.hr.load()[: height * scale, : width * scale]
            return np.ascontiguousarray(lr), np.ascontiguousarray(hr)
        top, left = (height - crop) // 2, (width - crop) // 2
        hr_crop = crop * scale
        return (np.ascontiguousarray(lr[top:top + crop, left:left + crop]),
                pair.hr.crop(top * scale, left * scale, hr_crop, hr_crop))

    def load_tf(index):
        lr, hr = tf.numpy_function(load, [index], [tf.uint8, tf.uint8], stateful=False)
        side = None if crop is None else crop
        lr.set_shape([side, side, 3])
        hr.set_shape([None if side is None else side * scale] * 2 + [3])
        return lr, hr

    dataset = tf.data.Dataset.range(len(pairs)).map(load_tf, num_parallel_calls=AUTOTUNE)
    return dataset.batch(1).prefetch(AUTOTUNE)
