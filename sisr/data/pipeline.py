"""tf.data pipelines over a list of LR/HR pairs.

Training: image indices are shuffled every epoch, repeated and batched; a parallel map
then cuts each batch in numpy (one Python call per batch, not per patch): a random LR
offset per image, the aligned HR patch at offset * scale (memory-mapped for `.npy`
caches, so only the touched pages are read), the same random flip and 90-degree rotation
for both. Each batch draws from its own numpy generator, seeded from a `tf.data` random
stream, so a `seed` makes runs reproducible even with the parallel map.
"""

import numpy as np
import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE


def _batch_maker(pairs, scale, lr_patch, augment):
    lr_shapes = [pair.lr.shape for pair in pairs]
    hr_patch = lr_patch * scale

    def make_batch(indices, batch_seed):
        rng = np.random.default_rng(int(batch_seed) & 0xFFFFFFFFFFFFFFFF)
        lr_batch = np.empty((len(indices), lr_patch, lr_patch, 3), np.uint8)
        hr_batch = np.empty((len(indices), hr_patch, hr_patch, 3), np.uint8)
        for slot, index in enumerate(indices):
            pair = pairs[index]
            height, width = lr_shapes[index]
            top = int(rng.integers(0, height - lr_patch + 1))
            left = int(rng.integers(0, width - lr_patch + 1))
            lr = pair.lr.crop(top, left, lr_patch, lr_patch)
            hr = pair.hr.crop(top * scale, left * scale, hr_patch, hr_patch)
            if augment:
                if rng.random() < 0.5:
                    lr, hr = lr[:, ::-1], hr[:, ::-1]
                turns = int(rng.integers(0, 4))
                lr, hr = np.rot90(lr, turns), np.rot90(hr, turns)
            lr_batch[slot] = lr
            hr_batch[slot] = hr
        return lr_batch, hr_batch

    return make_batch


def train_dataset(pairs, scale, batch_size, lr_patch, seed, repeat, augment):
    """Random aligned patch batches `(lr, hr)`, uint8 (B, p, p, 3) and (B, p*s, p*s, 3)."""
    count = len(pairs)
    make_batch = _batch_maker(pairs, scale, lr_patch, augment)
    hr_patch = lr_patch * scale

    def load(indices, batch_seed):
        lr, hr = tf.numpy_function(make_batch, [indices, batch_seed], [tf.uint8, tf.uint8],
                                   stateful=False)
        # Static batch shapes when repeating; a single epoch keeps its last, smaller batch.
        batch = batch_size if repeat else None
        lr.set_shape([batch, lr_patch, lr_patch, 3])
        hr.set_shape([batch, hr_patch, hr_patch, 3])
        return lr, hr

    indices = tf.data.Dataset.range(count).shuffle(count, seed=seed,
                                                   reshuffle_each_iteration=True)
    if repeat:
        indices = indices.repeat()
    indices = indices.batch(batch_size, drop_remainder=repeat)
    dataset = tf.data.Dataset.zip((indices, tf.data.Dataset.random(seed=seed)))
    dataset = dataset.map(load, num_parallel_calls=AUTOTUNE, deterministic=seed is not None)
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
