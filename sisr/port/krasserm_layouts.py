"""The layer layouts of the krasserm/super-resolution models, matched against a file.

A krasserm weights file stores its layers in the order of the model's layers, with
generated names (conv2d_17, batch_normalization_3, ...): each layout walks that list,
checks every kernel size and channel count, infers the builder arguments and maps each
stored layer to the sisr layer that takes its weights.
"""

import dataclasses
import math

from sisr.port.plan import PortError


class KrassermError(PortError):
    """A krasserm model file that does not fit a sisr model (names the layer)."""


@dataclasses.dataclass
class FileLayer:
    """One layer with weights, as stored: its name, kind and arrays by short name."""

    name: str
    kind: str                      # conv, bn, prelu, dense
    arrays: dict
    class_name: str = None         # from the JSON config of a full-model file
    config: dict = None
    weight_norm: bool = False

    def describe(self):
        shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in self.arrays.items())
        return f"layer {self.name!r} ({self.kind}: {shapes})"

    @property
    def kernel(self):
        return self.arrays["kernel"]

    @property
    def ksize(self):
        return self.kernel.shape[0] if self.kind == "conv" else None

    @property
    def cin(self):
        return self.kernel.shape[-2]

    @property
    def cout(self):
        return self.kernel.shape[-1]


@dataclasses.dataclass
class Walk:
    """A walk through a file's layers: the sisr model, the builder arguments the layers
    show, and the sisr layer of each stored layer (`sisr.port.formats.krasserm` makes the
    `Plan` from it)."""

    model: str
    args: dict
    assign: list = dataclasses.field(default_factory=list)   # (sisr layer, FileLayer)
    kind: str = "weights"          # a save_weights file, or a "full model" file
    notes: list = dataclasses.field(default_factory=list)
    tanh_output: bool = False      # Keras-2 era EDSR generator (edsr-16-x4-gen)
    scaling: float = None          # residual scaling stored in a model_config


class Cursor:
    """Walks the stored layers in order, checking each one against the expected layout."""

    def __init__(self, layers, model):
        self.layers = layers
        self.model = model
        self.i = 0

    def peek(self, offset=0):
        j = self.i + offset
        return self.layers[j] if j < len(self.layers) else None

    def kinds(self, *kinds):
        return all(self.peek(k) is not None and self.peek(k).kind == kind
                   for k, kind in enumerate(kinds))

    def take(self, kind, what, ksize=None, cin=None, cout=None, channels=None):
        layer = self.peek()
        if layer is None:
            raise KrassermError(f"{self.model}: the file ends where {what} ({kind}) was "
                                "expected")
        problems = []
        if layer.kind != kind:
            problems.append(f"a {kind} layer was expected")
        elif kind == "conv":
            if ksize is not None and layer.kernel.shape[:2] != (ksize, ksize):
                problems.append(f"a {ksize}x{ksize} kernel was expected")
            if cin is not None and layer.cin != cin:
                problems.append(f"{cin} input channels were expected")
            if cout is not None and layer.cout != cout:
                problems.append(f"{cout} output channels were expected")
        elif kind in ("bn", "prelu") and channels is not None:
            size = next(iter(layer.arrays.values())).size
            if size != channels:
                problems.append(f"{channels} channels were expected")
        if problems:
            raise KrassermError(f"{self.model}: {layer.describe()} does not fit as {what}: "
                                + "; ".join(problems))
        self.i += 1
        return layer

    def done(self):
        if self.i < len(self.layers):
            rest = ", ".join(repr(layer.name) for layer in self.layers[self.i:])
            raise KrassermError(f"{self.model}: unexpected layer(s) after the output layer, "
                                f"not part of the model: {rest}")


def _stages_scale(model, stages, layers):
    from sisr.model.common import UPSAMPLE_STAGES  # loads Keras: not at import (CLI --help)

    scales = {st: scale for scale, st in UPSAMPLE_STAGES.items()}
    key = tuple(stages)
    if key not in scales:
        names = ", ".join(repr(layer.name) for layer in layers)
        supported = ", ".join(f"x{scale} ({'x'.join(map(str, st))})"
                              for scale, st in UPSAMPLE_STAGES.items())
        raise KrassermError(f"{model}: upsampling stages x{' x'.join(map(str, key)) or '?'} "
                            f"({names}) are none of sisr's {supported}")
    return scales[key]


def _upsample(cur, plan, model, num_filters, with_prelu):
    """Sub-pixel stages conv(F*r*r) [+ PReLU] until the output conv (F -> 3)."""
    stages, taken = [], []
    while cur.peek() is not None and cur.peek().kind == "conv" and cur.peek().cout != 3:
        layer = cur.peek()
        ratio = layer.cout / num_filters
        r = int(round(math.sqrt(ratio)))
        if r < 2 or r * r * num_filters != layer.cout:
            raise KrassermError(f"{model}: {layer.describe()} does not fit as an upsampling "
                                f"conv ({num_filters} * r * r output channels expected)")
        conv = cur.take("conv", "an upsampling conv", ksize=3, cin=num_filters)
        prelu = cur.take("prelu", "an upsampling PReLU", channels=num_filters) \
            if with_prelu else None
        stages.append(r)
        taken.append((conv, prelu))
    scale = _stages_scale(model, stages, [c for c, _ in taken])
    for i, (conv, prelu) in enumerate(taken, start=1):
        plan.assign.append((f"upsample_x{scale}_conv{i}", conv))
        if prelu is not None:
            plan.assign.append((f"upsample_x{scale}_act{i}", prelu))
    return scale


def _start(layers, model, target, what, ksize):
    """A cursor over the file's layers and a walk whose first conv (RGB -> F) is taken;
    returns (cursor, walk, F)."""
    cur = Cursor(layers, model)
    plan = Walk(model, {})
    first = cur.take("conv", what, ksize=ksize, cin=3)
    plan.assign.append((target, first))
    return cur, plan, first.cout


def _srresnet(layers):
    cur, plan, f = _start(layers, "srresnet", "head_conv", "the head conv", ksize=9)
    plan.assign.append(("head_prelu", cur.take("prelu", "the head PReLU", channels=f)))
    n = 0
    while cur.kinds("conv", "bn", "prelu"):
        n += 1
        name = f"block{n}"
        plan.assign += [
            (f"{name}_conv1", cur.take("conv", f"{name} conv1", ksize=3, cin=f, cout=f)),
            (f"{name}_bn1", cur.take("bn", f"{name} BN1", channels=f)),
            (f"{name}_prelu", cur.take("prelu", f"{name} PReLU", channels=f)),
            (f"{name}_conv2", cur.take("conv", f"{name} conv2", ksize=3, cin=f, cout=f)),
            (f"{name}_bn2", cur.take("bn", f"{name} BN2", channels=f)),
        ]
    plan.assign += [("body_conv", cur.take("conv", "the body conv", ksize=3, cin=f, cout=f)),
                    ("body_bn", cur.take("bn", "the body BN", channels=f))]
    return _upsampler_and_output(cur, plan, f, n, output_ksize=9, with_prelu=True)


def _upsampler_and_output(cur, plan, f, n, output_ksize, with_prelu):
    """The end of EDSR and SRResNet after the body: upsampler, output conv (F -> 3)."""
    scale = _upsample(cur, plan, plan.model, f, with_prelu=with_prelu)
    plan.assign.append(("output_conv", cur.take("conv", "the output conv", ksize=output_ksize,
                                                cin=f, cout=3)))
    cur.done()
    plan.args = {"scale": scale, "num_filters": int(f), "num_res_blocks": n}
    return plan


def _edsr(layers):
    cur, plan, f = _start(layers, "edsr", "head_conv", "the head conv", ksize=3)
    # 2 convs per block, then the body conv: all 3x3, F -> F
    same = 0
    while cur.peek(same) is not None and cur.peek(same).kind == "conv" and \
            cur.peek(same).cout == f and cur.peek(same).cin == f:
        same += 1
    if same % 2 != 1:
        raise KrassermError(f"edsr: {same} convs of {f} -> {f} channels follow the head "
                            "conv; expected 2 per residual block and the body conv")
    n = same // 2
    for i in range(1, n + 1):
        plan.assign += [(f"block{i}_conv{j}", cur.take("conv", f"block{i} conv{j}", ksize=3))
                        for j in (1, 2)]
    plan.assign.append(("body_conv", cur.take("conv", "the body conv", ksize=3)))
    return _upsampler_and_output(cur, plan, f, n, output_ksize=3, with_prelu=False)


def _wdsr(layers):
    from sisr.model.wdsr import LINEAR  # loads Keras: not at import (CLI --help)

    b_variant = len(layers) > 1 and layers[1].kind == "conv" and layers[1].ksize == 1
    model = "wdsr_b" if b_variant else "wdsr_a"
    cur, plan, f = _start(layers, model, "head_conv", "the head conv", ksize=3)
    # the residual blocks lie between the head conv and the two tail convs
    per = 3 if b_variant else 2
    body = len(layers) - 3
    if body < 0 or body % per:
        raise KrassermError(f"{model}: {len(layers)} convs are not the head conv, blocks of "
                            f"{per} convs, and the main and skip convs")
    n, wide = body // per, None
    for i in range(1, n + 1):
        name = f"block{i}"
        if b_variant:
            c1 = cur.take("conv", f"{name} conv1", ksize=1, cin=f, cout=wide)
            wide = c1.cout
            c2 = cur.take("conv", f"{name} conv2", ksize=1, cin=wide,
                          cout=int(f * LINEAR))
            c3 = cur.take("conv", f"{name} conv3", ksize=3, cin=c2.cout, cout=f)
            plan.assign += [(f"{name}_conv1", c1), (f"{name}_conv2", c2), (f"{name}_conv3", c3)]
        else:
            c1 = cur.take("conv", f"{name} conv1", ksize=3, cin=f, cout=wide)
            wide = c1.cout
            c2 = cur.take("conv", f"{name} conv2", ksize=3, cin=wide, cout=f)
            plan.assign += [(f"{name}_conv1", c1), (f"{name}_conv2", c2)]
    # main (3x3, F -> 3r^2) and skip (5x5, 3 -> 3r^2), in either order (layer depth)
    tail = [cur.peek(0), cur.peek(1)]
    if None in tail or {t.kind for t in tail} != {"conv"} or \
            sorted(t.cin for t in tail) != sorted([3, f]):
        what = ", ".join(t.describe() for t in tail if t is not None) or "nothing"
        raise KrassermError(f"{model}: expected the main (3x3, {f} -> 3*r*r) and skip "
                            f"(5x5, 3 -> 3*r*r) convs after {n} blocks, found {what}")
    main_first = tail[0].cin == f
    outs = tail[0].cout
    r = int(round(math.sqrt(outs / 3)))
    if 3 * r * r != outs or r not in (2, 3, 4, 8):
        raise KrassermError(f"{model}: {tail[0].describe()}: {outs} output channels are not "
                            "3 * r * r for a scale r of 2, 3, 4 or 8")
    convs = {}
    for is_main in ((True, False) if main_first else (False, True)):
        convs[is_main] = cur.take("conv", "the main conv" if is_main else "the skip conv",
                                  ksize=3 if is_main else 5, cin=f if is_main else 3,
                                  cout=outs)
    cur.done()
    plan.assign += [(f"main_x{r}_conv", convs[True]), (f"skip_x{r}_conv", convs[False])]
    plan.args = {"scale": r, "num_filters": int(f), "num_res_blocks": n}
    if n:
        plan.args["res_block_expansion"] = int(wide // f)
        if wide % f:
            raise KrassermError(f"{model}: block1 widens {f} to {wide} channels, not a "
                                "whole expansion factor")
    return plan


def _discriminator(layers):
    cur, plan, f = _start(layers, "discriminator", "block1_conv", "block1 conv", ksize=3)
    cin = f
    for i, mult in enumerate((1, 2, 2, 4, 4, 8, 8), start=2):
        plan.assign += [
            (f"block{i}_conv", cur.take("conv", f"block{i} conv", ksize=3, cin=cin,
                                        cout=f * mult)),
            (f"block{i}_bn", cur.take("bn", f"block{i} BN", channels=f * mult)),
        ]
        cin = f * mult
    fc1 = cur.take("dense", "the first dense layer")
    side = math.isqrt(fc1.kernel.shape[0] // (8 * f)) if fc1.kernel.shape[0] % (8 * f) == 0 else 0
    if side < 1 or side * side * 8 * f != fc1.kernel.shape[0] or fc1.kernel.shape[1] != 1024:
        raise KrassermError(f"discriminator: {fc1.describe()} does not fit as the first dense "
                            f"layer (h*w*{8 * f} -> 1024 of a square input)")
    out = cur.take("dense", "the output dense layer")
    if out.kernel.shape != (1024, 1):
        raise KrassermError(f"discriminator: {out.describe()} does not fit as the output "
                            "(1024 -> 1)")
    cur.done()
    plan.assign += [("fc1", fc1), ("output", out)]
    plan.args = {"hr_size": side * 16, "num_filters": int(f)}
    return plan


LAYOUTS = {"srresnet": _srresnet, "edsr": _edsr, "wdsr": _wdsr,
           "discriminator": _discriminator}


def detect(layers):
    kinds = {layer.kind for layer in layers}
    first = layers[0]
    if "prelu" in kinds:
        return "srresnet"
    if "dense" in kinds:
        return "discriminator"
    if kinds == {"conv"}:
        if any(layer.weight_norm for layer in layers) or any(
                layer.ksize == 5 and layer.cin == 3 for layer in layers):
            return "wdsr"
        return "edsr"
    raise KrassermError(
        f"cannot tell which krasserm model the file holds (first {first.describe()}); "
        "expected EDSR, WDSR-A/B, the SRResNet/SRGAN generator or the SRGAN discriminator")
