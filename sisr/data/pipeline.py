"""tf.data pipelines over a list of LR/HR pairs, in TensorFlow ops only.

No Python runs inside the pipelines: a `tf.numpy_function` that is still in flight when
the interpreter exits (an exception or Ctrl-C escaping a training loop) makes the process
hang at exit. So files are read with `tf.io.read_file` (`.npy` caches: raw bytes after the
header; 8-bit PNG and JPEG: TensorFlow's decoders, which give the same pixels as Pillow;
other formats are decoded once with Pillow and kept in memory) and images in memory are
sliced from one uint8 tensor.

Training: image indices are shuffled every epoch and repeated; each image visit gives
`patches_per_image` random aligned crops (LR offset * scale = HR offset) with the same
random flip and 90-degree rotation for LR and HR (one per image visit), drawn with
stateless RNG from a per-visit seed stream, so a `seed` makes runs reproducible under the
parallel map.
The patches of a window of `batch_size` reads are shuffled together (stateless too), then
batched and prefetched; so batch b depends only on the seed and b, and the stream can start
at any batch without reading the images of the batches before it (a resumed training run).
"""

import logging

import numpy as np
import tensorflow as tf

from sisr.data.sources import FileSource

log = logging.getLogger(__name__)

AUTOTUNE = tf.data.AUTOTUNE
_NPY, _IMAGE, _MEMORY = 0, 1, 2


class _Reader:
    """Reads image i of one side (LR or HR) as a uint8 [h, w, 3] tensor, in TF ops.

    Only the kinds of source present are traced (a `switch_case` over them when mixed),
    which keeps building a pipeline fast.
    """

    def __init__(self, sources):
        kinds, paths, offsets, chunks = [], [], [], []
        memory_size = 0
        fallback = []
        for source in sources:
            if isinstance(source, FileSource) and source.is_numpy:
                kinds.append(_NPY)
                paths.append(source.path)
                offsets.append(source.info.data_offset)
            elif isinstance(source, FileSource) and source.info.tf_decodable:
                kinds.append(_IMAGE)
                paths.append(source.path)
                offsets.append(0)
            else:
                if isinstance(source, FileSource):
                    fallback.append(source.path)
                array = np.ascontiguousarray(source.load()).reshape(-1)
                kinds.append(_MEMORY)
                paths.append("")
                offsets.append(memory_size)
                chunks.append(array)
                memory_size += array.size
        if fallback:
            log.info("decoding %d image(s) into memory up front (a format TensorFlow does not "
                     "decode like Pillow), e.g. %s", len(fallback), fallback[0])
        self.present = sorted(set(kinds))
        # Branch number of each image in the switch over the kinds present.
        self.branch = tf.constant([self.present.index(k) for k in kinds], tf.int32)
        self.paths = tf.constant(paths, tf.string)
        self.offsets = tf.constant(offsets, tf.int64)
        self.shapes = tf.constant([source.shape for source in sources], tf.int32)
        self.memory = tf.convert_to_tensor(
            np.concatenate(chunks) if chunks else np.zeros([0], np.uint8))

    def _switch(self, index, functions):
        branches = [functions[kind] for kind in self.present]
        if len(branches) == 1:
            return branches[0]()
        return tf.switch_case(self.branch[index], branches)

    def _shape(self, index):
        return tf.concat([self.shapes[index], [3]], axis=0)

    def _npy_image(self, index):
        raw = tf.io.decode_raw(tf.io.read_file(self.paths[index]), tf.uint8)
        return tf.reshape(raw[self.offsets[index]:], self._shape(index))

    def _decoded_image(self, index):
        data = tf.io.read_file(self.paths[index])
        image = tf.cond(
            tf.io.is_jpeg(data),
            # ISLOW DCT, as Pillow, so that pixels match `sisr.imageio.read_rgb` exactly.
            lambda: tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE"),
            lambda: tf.io.decode_png(data, channels=3),
        )
        return tf.reshape(image, self._shape(index))

    def _memory_image(self, index):
        shape = self._shape(index)
        start = self.offsets[index]
        size = tf.cast(tf.reduce_prod(shape), tf.int64)
        return tf.reshape(self.memory[start:start + size], shape)

    def _npy_crops(self, index, tops, lefts, size):
        # Only the patch rows are converted: `substr` cuts them out of the file bytes, far
        # cheaper than decoding a whole 2K image for a few patches.
        count = tops.shape[0]
        data = tf.io.read_file(self.paths[index])
        row_bytes = tf.cast(self.shapes[index][1], tf.int64) * 3
        rows = tf.cast(tops[:, None] + tf.range(size)[None, :], tf.int64)
        starts = self.offsets[index] + rows * row_bytes + tf.cast(lefts, tf.int64)[:, None] * 3
        pieces = tf.strings.substr(data, tf.reshape(starts, [-1]),
                                   tf.fill([count * size], tf.constant(size * 3, tf.int64)))
        return tf.reshape(tf.io.decode_raw(pieces, tf.uint8), [count, size, size, 3])

    def __call__(self, index):
        image = self._switch(index, {
            _NPY: lambda: self._npy_image(index),
            _IMAGE: lambda: self._decoded_image(index),
            _MEMORY: lambda: self._memory_image(index),
        })
        image.set_shape([None, None, 3])
        return image

    def crops(self, index, tops, lefts, size):
        """Patches [K, size, size, 3] of image i at (tops[k], lefts[k])."""
        patches = self._switch(index, {
            _NPY: lambda: self._npy_crops(index, tops, lefts, size),
            _IMAGE: lambda: _crops(self._decoded_image(index), tops, lefts, size),
            _MEMORY: lambda: _crops(self._memory_image(index), tops, lefts, size),
        })
        patches.set_shape([tops.shape[0], size, size, 3])
        return patches


def _crops(image, tops, lefts, size):
    """Patches [K, size, size, 3] of `image` at (tops[k], lefts[k])."""
    return tf.stack([image[tops[k]:tops[k] + size, lefts[k]:lefts[k] + size]
                     for k in range(tops.shape[0])])


def _flip_rotate(patches, flip, turns):
    """Horizontal flip (if `flip`) then `turns` counter-clockwise quarter turns."""
    patches = tf.cond(flip, lambda: tf.reverse(patches, axis=[2]), lambda: patches)
    # Quarter turns transpose. On uint8, TensorFlow's oneDNN check logs "oneDNN supports
    # DT_UINT8 only on platforms with AVX-512" as an error on every CPU, AVX-512 ones too;
    # on float32, exact for uint8 values, it says nothing.
    dtype = patches.dtype
    return tf.cast(tf.image.rot90(tf.cast(patches, tf.float32), turns), dtype)


def _augmentation(random):
    """The flip and quarter turns of an image read (from its seed)."""
    flip = tf.random.stateless_uniform(
        [], seed=tf.stack([random, tf.constant(1, tf.int64)])) < 0.5
    turns = tf.random.stateless_uniform(
        [], seed=tf.stack([random, tf.constant(2, tf.int64)]), minval=0, maxval=4,
        dtype=tf.int32)
    return flip, turns


def _degrading(degrade, lr_patch):
    """(patch seed, uint8 HR patch) -> (uint8 LR patch, uint8 target) by `degrade`."""
    def apply(key, hr):
        # The read's int64 seed and the patch's place in the read: an int32 [2] seed.
        mixed = tf.random.experimental.stateless_fold_in(
            tf.bitcast(key[0], tf.int32), tf.cast(key[1], tf.int32))
        lr, target = degrade(tf.cast(hr, tf.float32) / 255.0, mixed)
        lr = tf.cast(tf.round(tf.clip_by_value(lr, 0.0, 1.0) * 255.0), tf.uint8)
        target = tf.cast(tf.round(tf.clip_by_value(target, 0.0, 1.0) * 255.0), tf.uint8)
        lr.set_shape([lr_patch, lr_patch, 3])
        return lr, target
    return apply


def train_dataset(pairs, scale, batch_size, lr_patch, seed, repeat, augment,
                  patches_per_image, skip_batches=0, degrade=None):
    """Random aligned patch batches `(lr, hr)`, uint8 (B, p, p, 3) and (B, p*s, p*s, 3),
    from batch number `skip_batches` of the stream on (without reading the images of the
    batches left out).

    With `degrade` (see sisr.data.degradations), only HR images are read: each HR patch
    gets its own stateless seed (from its image read's seed and its place in the read)
    and `degrade(hr, seed)` makes its LR patch and training target on the fly.
    """
    count = len(pairs)
    read_hr = _Reader([p.hr for p in pairs])
    read_lr = None if degrade else _Reader([p.lr for p in pairs])
    k_patches, hr_patch = patches_per_image, lr_patch * scale

    def load(index, random):
        seed_offsets = tf.stack([random, tf.constant(0, tf.int64)])
        if degrade:
            room = tf.cast(read_hr.shapes[index] // scale - lr_patch + 1, tf.float32)
        else:
            room = tf.cast(read_lr.shapes[index] - lr_patch + 1, tf.float32)
        u = tf.random.stateless_uniform([k_patches, 2], seed=seed_offsets)
        offsets = tf.minimum(tf.cast(u * room, tf.int32), tf.cast(room, tf.int32) - 1)
        tops, lefts = offsets[:, 0], offsets[:, 1]
        hr_patches = read_hr.crops(index, tops * scale, lefts * scale, hr_patch)
        if degrade:
            # A placeholder LR side, replaced after mixing by the degraded patches; it
            # carries each patch's seed (per read, per patch) through the shuffles.
            lr_patches = tf.stack([tf.fill([k_patches], random),
                                   tf.range(k_patches, dtype=tf.int64)], axis=1)
            hr_patches = _flip_rotate(hr_patches, *_augmentation(random)) if augment \
                else hr_patches
            hr_patches.set_shape([k_patches, hr_patch, hr_patch, 3])
            return lr_patches, hr_patches, random
        lr_patches = read_lr.crops(index, tops, lefts, lr_patch)
        if augment:
            # One flip/rotation per image read (cheap on the stacked patches); patches of
            # different reads are shuffled together, so batches still mix all eight.
            flip, turns = _augmentation(random)
            lr_patches = _flip_rotate(lr_patches, flip, turns)
            hr_patches = _flip_rotate(hr_patches, flip, turns)
        lr_patches.set_shape([k_patches, lr_patch, lr_patch, 3])
        hr_patches.set_shape([k_patches, hr_patch, hr_patch, 3])
        return lr_patches, hr_patches, random

    def mix(lr_patches, hr_patches, randoms):
        """The patches of a window of reads in a random order (seeded by its first read)."""
        n = tf.shape(lr_patches)[0] * k_patches
        keys = tf.random.stateless_uniform([n], seed=tf.stack([randoms[0],
                                                               tf.constant(3, tf.int64)]))
        order = tf.argsort(keys)
        lr_patches = tf.reshape(lr_patches, [n] + lr_patches.shape[2:].as_list())
        hr_patches = tf.reshape(hr_patches, [n, hr_patch, hr_patch, 3])
        return tf.gather(lr_patches, order), tf.gather(hr_patches, order)

    indices = tf.data.Dataset.range(count).shuffle(count, seed=seed,
                                                   reshuffle_each_iteration=True)
    if repeat:
        indices = indices.repeat()
    # One int64 per image read: the stateless seed of its crops and augmentation.
    reads = tf.data.Dataset.zip((indices, tf.data.Dataset.random(seed=seed)))
    # Batches come from windows of `batch_size` reads (`k_patches` batches each), so batch
    # b needs the reads from window b // k_patches on: skipping batches skips (index,
    # seed) pairs, not image reads, and gives the very batches of the whole stream.
    windows, within = divmod(int(skip_batches), k_patches)
    dataset = reads.skip(windows * batch_size).map(
        load, num_parallel_calls=AUTOTUNE, deterministic=seed is not None)
    if k_patches > 1:
        # Mix the patches of a window's images so that a batch is not one image's patches.
        dataset = dataset.batch(batch_size).map(mix, num_parallel_calls=AUTOTUNE,
                                                deterministic=seed is not None)
    else:
        dataset = dataset.map(lambda lr, hr, random: (lr, hr))
    dataset = dataset.unbatch()
    if degrade:
        dataset = dataset.map(_degrading(degrade, lr_patch), num_parallel_calls=AUTOTUNE,
                              deterministic=seed is not None)
    # Static batch shapes when repeating; a single epoch keeps its last, smaller batch.
    dataset = dataset.batch(batch_size, drop_remainder=repeat)
    return dataset.skip(within).prefetch(AUTOTUNE)


def valid_dataset(pairs, scale, crop, fixed_shape=True):
    """Full images (crop None) or centre crops of LR size `crop`, batch 1, in order.

    An image smaller than `crop` keeps its whole height or width; `fixed_shape` (every
    image is large enough) gives the crops a static shape.
    """
    read_lr, read_hr = _Reader([p.lr for p in pairs]), _Reader([p.hr for p in pairs])

    def load(index):
        lr, hr = read_lr(index), read_hr(index)
        height, width = tf.shape(lr)[0], tf.shape(lr)[1]
        if crop is None:
            return lr, hr[:height * scale, :width * scale]
        crop_h, crop_w = tf.minimum(crop, height), tf.minimum(crop, width)
        top, left = (height - crop_h) // 2, (width - crop_w) // 2
        lr = lr[top:top + crop_h, left:left + crop_w]
        hr = hr[top * scale:(top + crop_h) * scale, left * scale:(left + crop_w) * scale]
        if fixed_shape:
            lr.set_shape([crop, crop, 3])
            hr.set_shape([crop * scale, crop * scale, 3])
        return lr, hr

    dataset = tf.data.Dataset.range(len(pairs)).map(load, num_parallel_calls=AUTOTUNE)
    return dataset.batch(1).prefetch(AUTOTUNE)
