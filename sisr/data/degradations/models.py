"""The degradation models: functions `(hr, seed) -> (lr, target)` of one HR crop.

`hr` is float32 [H, W, 3] in [0, 1] of static size (H and W divisible by the scale),
`seed` an int32 [2] stateless seed; `lr` is [H / s, W / s, 3] rounded to 8-bit levels and
`target` the training target (the HR crop, or its sharpened copy). Every random choice
is a stateless draw from a seed split off `seed`, so a crop's LR depends on its seed only.
"""

import functools
import math

import tensorflow as tf

from sisr.data.degradations import kernels, ops

KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso",
                "plateau_aniso")
_TYPE_SHAPE = [kernels.GAUSSIAN, kernels.GAUSSIAN, kernels.GENERALIZED, kernels.GENERALIZED,
               kernels.PLATEAU, kernels.PLATEAU]
_TYPE_ISO = [True, False, True, False, True, False]


class _Draws:
    """Consecutive stateless draws from one seed (a fixed sequence of sub-seeds)."""

    def __init__(self, seed):
        self.base = seed
        self.next = 0

    def seed(self):
        self.next += 1
        return tf.random.experimental.stateless_fold_in(self.base, self.next)

    def uniform(self, low=0.0, high=1.0):
        return tf.random.stateless_uniform([], self.seed(), low, high)

    def chance(self, p):
        return self.uniform() < p

    def integer(self, low, high):
        """Uniform integer in [low, high]."""
        return tf.random.stateless_uniform([], self.seed(), low, high + 1, tf.int32)

    def choice(self, probs):
        """Index drawn with probabilities `probs`."""
        cumulative = tf.constant([sum(probs[:i + 1]) for i in range(len(probs))], tf.float32)
        u = self.uniform() * cumulative[-1]
        return tf.minimum(tf.reduce_sum(tf.cast(cumulative <= u, tf.int32)), len(probs) - 1)


def _beta(draws, beta_range):
    """Real-ESRGAN's shape parameter: U(low, 1) or U(1, high), each with p 0.5."""
    low = draws.uniform(beta_range[0], 1.0)
    high = draws.uniform(1.0, beta_range[1])
    return tf.where(draws.chance(0.5), low, high)


def _odd_size(draws, low, high):
    return 2 * draws.integer(low // 2, high // 2) + 1


def realesrgan_kernel(draws, p, suffix, size):
    """Real-ESRGAN's blur kernel of one stage (`suffix` "" or "2"): a sinc with p
    `sinc_prob`, else a kernel type of `kernel_list` with `kernel_prob`."""
    k = _odd_size(draws, 7, size)
    sinc = draws.chance(p["sinc_prob" + suffix])
    # Small sinc kernels with low cutoffs ring too much: Real-ESRGAN's ranges.
    cutoff = tf.where(k < 13, draws.uniform(math.pi / 3, math.pi),
                      draws.uniform(math.pi / 5, math.pi))
    names = p["kernel_list" + suffix]
    which = draws.choice(p["kernel_prob" + suffix])
    shape = tf.gather([_TYPE_SHAPE[KERNEL_TYPES.index(n)] for n in names], which)
    iso = tf.gather([_TYPE_ISO[KERNEL_TYPES.index(n)] for n in names], which)
    sigma_range = p["blur_sigma" + suffix]
    sigma_x = draws.uniform(*sigma_range)
    sigma_y = tf.where(iso, sigma_x, draws.uniform(*sigma_range))
    theta = tf.where(iso, 0.0, draws.uniform(-math.pi, math.pi))
    beta = tf.where(shape == kernels.PLATEAU, _beta(draws, p["betap_range" + suffix]),
                    _beta(draws, p["betag_range" + suffix]))
    shape = tf.where(sinc, kernels.SINC, shape)
    return kernels.kernel(size, shape, k, sigma_x, sigma_y, theta, beta, cutoff)


def _random_resize(draws, image, probs, scale_range, height, width):
    """Real-ESRGAN's resize: up (U(1, high)), down (U(low, 1)) or keep, random mode, to
    `floor(size * factor)` of (height, width)."""
    direction = draws.choice(probs)
    factor = tf.gather([draws.uniform(1.0, scale_range[1]),
                        draws.uniform(scale_range[0], 1.0), tf.constant(1.0)], direction)
    mode = draws.integer(0, 2)
    new_h = tf.maximum(1, tf.cast(tf.cast(height, tf.float32) * factor, tf.int32))
    new_w = tf.maximum(1, tf.cast(tf.cast(width, tf.float32) * factor, tf.int32))
    return ops.resize(image, new_h, new_w, mode)


def _realesrgan_noise(draws, image, p, suffix):
    gray = draws.chance(p["gray_noise_prob" + suffix])
    gaussian = draws.chance(p["gaussian_noise_prob" + suffix])
    sigma = draws.uniform(*p["noise_range" + suffix])
    poisson = draws.uniform(*p["poisson_scale_range" + suffix])
    seed = draws.seed()
    noisy = tf.cond(gaussian, lambda: ops.gaussian_noise(image, seed, sigma, gray),
                    lambda: ops.poisson_noise(image, seed, poisson, gray))
    return tf.clip_by_value(noisy, 0.0, 1.0)


def _quality(draws, quality_range):
    return tf.cast(tf.round(draws.uniform(*quality_range)), tf.int32)


def realesrgan(p, scale):
    """Real-ESRGAN's second-order degradation (Wang et al., ICCVW 2021)."""
    size = p["blur_kernel_size"]

    def degrade(hr, seed):
        draws = _Draws(seed)
        height, width = hr.shape[0], hr.shape[1]
        kernel1 = realesrgan_kernel(draws, p, "", size)
        kernel2 = realesrgan_kernel(draws, p, "2", p["blur_kernel_size2"])
        final_k = _odd_size(draws, 7, size)
        final_sinc = kernels.sinc_kernel(size, final_k, draws.uniform(math.pi / 3, math.pi))
        use_final_sinc = draws.chance(p["final_sinc_prob"])
        # The first degradation.
        out = ops.filter2d(hr, kernel1)
        out = _random_resize(draws, out, p["resize_prob"], p["resize_range"], height, width)
        out = _realesrgan_noise(draws, out, p, "")
        out = ops.jpeg(out, _quality(draws, p["jpeg_range"]))
        # The second degradation, towards the LR size.
        second_blur = draws.chance(p["second_blur_prob"])
        out = tf.cond(second_blur, lambda: ops.filter2d(out, kernel2), lambda: out)
        out = _random_resize(draws, out, p["resize_prob2"], p["resize_range2"],
                             height // scale, width // scale)
        out = _realesrgan_noise(draws, out, p, "2")
        quality2 = _quality(draws, p["jpeg_range2"])
        mode = draws.integer(0, 2)

        def back(image):  # resize to the LR size + the final sinc filter (or none)
            image = ops.resize(image, height // scale, width // scale, mode)
            return tf.cond(use_final_sinc, lambda: ops.filter2d(image, final_sinc),
                           lambda: image)

        # Real-ESRGAN's two orders: [resize + sinc] then JPEG, or JPEG then [resize + sinc].
        out = tf.cond(draws.chance(0.5), lambda: ops.jpeg(back(out), quality2),
                      lambda: back(ops.jpeg(out, quality2)))
        target = ops.usm_sharpen(hr) if p["gt_usm"] else hr
        return out, target

    return degrade


def simple(p, scale):
    """Gaussian blur, MATLAB bicubic downsampling, Gaussian noise, optional JPEG."""
    size = p["blur_kernel_size"]

    def degrade(hr, seed):
        draws = _Draws(seed)
        sigma = draws.uniform(*p["blur_sigma"])
        kernel = kernels.kernel(size, kernels.GAUSSIAN, size, sigma, sigma, 0.0, 1.0, 0.0)
        out = ops.matlab_downscale(ops.filter2d(hr, kernel), scale)
        noise_sigma = draws.uniform(*p["noise_range"])
        out = tf.clip_by_value(ops.gaussian_noise(out, draws.seed(), noise_sigma, False),
                               0.0, 1.0)
        quality = _quality(draws, p["jpeg_range"])
        out = tf.cond(draws.chance(p["jpeg_prob"]), lambda: ops.jpeg(out, quality),
                      lambda: out)
        return out, hr

    return degrade


def bsrgan_blur_kernel(size, factor, aniso, k, u1, u2, u3, u4):
    """BSRGAN's `add_blur` kernel from its uniform draws u1..u4 in [0, 1): anisotropic
    Gaussian (`anisotropic_Gaussian`: variances l1 = (4 + s) u1 and l2 = (4 + s) u2 along
    the angle pi u3) if `aniso`, else isotropic (`fspecial('gaussian')`, sigma
    (2 + 0.2 s) u4); support `k`, `factor` s the scale still to go."""
    wide, narrow = 4.0 + factor, 2.0 + 0.2 * factor
    # A zero variance would make BSRGAN's kernel undefined: the floors keep it a delta.
    sigma_x = tf.where(aniso, tf.sqrt(tf.maximum(u1 * wide, 1e-6)),
                       tf.maximum(u4 * narrow, 1e-3))
    sigma_y = tf.where(aniso, tf.sqrt(tf.maximum(u2 * wide, 1e-6)), sigma_x)
    theta = tf.where(aniso, u3 * math.pi, 0.0)
    return kernels.kernel(size, kernels.GAUSSIAN, k, sigma_x, sigma_y, theta, 1.0, 0.0)


def _bsrgan_blur(draws, image, factor, size):
    """BSRGAN's blur: either kernel of `bsrgan_blur_kernel` with p 0.5, side
    2 * U{2..11} + 3; mirror padding as its `ndimage.convolve(mode='mirror')`."""
    k = 2 * draws.integer(2, 11) + 3
    aniso = draws.chance(0.5)
    u1, u2, u3, u4 = (draws.uniform() for _ in range(4))
    return ops.filter2d(image, bsrgan_blur_kernel(size, factor, aniso, k, u1, u2, u3, u4))


def correlated_noise_root(d, a, top):
    """BSRGAN's channel-correlated noise as a matrix R with noise = R z, z ~ N(0, I):
    covariance C = |L^2 U^T diag(d) U| (elementwise absolute value) with U the left
    singular vectors of the uniform 3 x 3 matrix `a` (scipy's `orth`) and L = `top`. C need
    not be positive semidefinite; NumPy's `multivariate_normal` (SVD) then samples with
    covariance V |Lambda| V^T, and so does R = V |Lambda|^1/2."""
    _, u, _ = tf.linalg.svd(a)
    # |.| makes C independent of the singular vectors' signs.
    cov = tf.abs(top ** 2 * tf.matmul(u, tf.matmul(tf.linalg.diag(d), u), transpose_a=True))
    values, vectors = tf.linalg.eigh(cov)
    return vectors * tf.sqrt(tf.abs(values))[None, :]


def bsrgan_noise(image, level, kind, colour_z, gray_z, d, a, correlated_z, top):
    """BSRGAN's `add_Gaussian_noise` from its draws: `level` the noise level on the 0..255
    scale, `kind` U(0, 1): colour noise `level * colour_z` if kind > 0.6, grey
    `level * gray_z` ([h, w, 1]) if kind < 0.4, else channel-correlated
    (`correlated_noise_root(d, a, top)` times `correlated_z`, whatever the level);
    clipped to [0, 1]."""
    sigma = tf.cast(level, tf.float32) / 255.0
    colour = colour_z * sigma
    gray = gray_z * sigma * tf.ones([3])
    root = correlated_noise_root(d, a, top)
    correlated = tf.einsum("ij,hwj->hwi", root, correlated_z)
    noise = tf.where(kind > 0.6, colour, tf.where(kind < 0.4, gray, correlated))
    return tf.clip_by_value(image + noise, 0.0, 1.0)


def _bsrgan_noise(draws, image, p):
    """BSRGAN's Gaussian noise, level U{low..high}: colour (p 0.4), grey (p 0.4) or
    channel-correlated (p 0.2) with the range's top level (as BSRGAN's code)."""
    level = draws.integer(*(int(round(v)) for v in p["noise_range"]))
    kind = draws.uniform()
    seed = draws.seed()
    shape = tf.shape(image)
    return bsrgan_noise(
        image, level, kind, tf.random.stateless_normal(shape, seed),
        tf.random.stateless_normal(shape[:2], seed + 1)[:, :, None],
        tf.random.stateless_uniform([3], seed + 2),
        tf.random.stateless_uniform([3, 3], seed + 3), tf.random.stateless_normal(shape, seed + 4),
        p["noise_range"][1] / 255.0)


def bsrgan(p, scale):
    """BSRGAN's degradation (Zhang et al., ICCV 2021, `degradation_bsrgan`): blur twice,
    downsampling, noise and JPEG in random order, then a final JPEG (its camera-pipeline
    noise is left out; its step is a no-op without a camera model)."""
    size = 25

    def quality(draws):  # BSRGAN's random.randint(30, 95): every integer equally likely
        return draws.integer(*(int(round(q)) for q in p["jpeg_range"]))

    def degrade(hr, seed):
        draws = _Draws(seed)
        height, width = hr.shape[0], hr.shape[1]
        lr_h, lr_w = height // scale, width // scale
        # Only at x4: first halve the image with p `scale2_prob` (factor 2 left).
        pre = tf.logical_and(scale == 4, draws.chance(p["scale2_prob"]))
        half_mode = draws.integer(0, 2)
        matlab = draws.chance(0.5)
        # Half by a random interpolation, or by MATLAB's bicubic, each with p 0.5.
        image = tf.cond(pre, lambda: tf.clip_by_value(tf.cond(
            matlab, lambda: ops.matlab_downscale(hr, 2),
            lambda: ops.resize(hr, height // 2, width // 2, half_mode)), 0.0, 1.0),
            lambda: hr)
        image.set_shape([None, None, 3])
        factor = tf.where(pre, 2.0, float(scale))
        order = tf.argsort(tf.random.stateless_uniform([6], draws.seed()))
        # The downsampling (step 2) must come before the resize to the LR size (step 3).
        where2 = tf.argmax(tf.cast(order == 2, tf.int32))
        where3 = tf.argmax(tf.cast(order == 3, tf.int32))
        order = tf.where(where2 > where3,
                         tf.where(order == 2, 3, tf.where(order == 3, 2, order)), order)
        jpeg_in_loop = draws.chance(p["jpeg_prob"])

        def down(image):
            h = tf.cast(tf.shape(image)[0], tf.float32)
            w = tf.cast(tf.shape(image)[1], tf.float32)
            by = draws.uniform(1.0, 2.0 * factor)
            resized = ops.resize(image, tf.maximum(1, tf.cast(h / by, tf.int32)),
                                 tf.maximum(1, tf.cast(w / by, tf.int32)), draws.integer(0, 2))
            # Else blur then nearest: a Gaussian shifted by (s - 1) / 2 keeps the centres.
            sigma = draws.uniform(0.1, 0.6 * factor)
            step = tf.cast(factor, tf.int32)
            blurred = ops.filter2d(image, kernels.shifted_gaussian(
                size, sigma, (factor - 1.0) / 2.0))[::step, ::step] if scale > 1 else image
            return tf.clip_by_value(
                tf.cond(draws.chance(0.75), lambda: resized, lambda: blurred), 0.0, 1.0)

        steps = [
            lambda im: _bsrgan_blur(draws, im, factor, size),
            lambda im: _bsrgan_blur(draws, im, factor, size),
            down,
            lambda im: tf.clip_by_value(ops.resize(im, lr_h, lr_w, draws.integer(0, 2)),
                                        0.0, 1.0),
            lambda im: _bsrgan_noise(draws, im, p),
            lambda im: tf.cond(jpeg_in_loop, lambda: ops.jpeg(im, quality(draws)),
                               lambda: im),
        ]
        # Every step's draws are made once, whatever the order (a fixed draw sequence).
        for position in range(6):
            image = tf.switch_case(order[position],
                                   [functools.partial(step, image) for step in steps])
            image.set_shape([None, None, 3])
        image = ops.jpeg(image, quality(draws))
        return image, hr

    return degrade


MODELS = {"realesrgan": realesrgan, "simple": simple, "bsrgan": bsrgan}
