"""The one way a `Plan` becomes a model: check the request, build, fill.

    ported = run(plan, requested={"scale": 2}, model="edsr", profile="edsr-16")

`check` compares the requested model and builder arguments (explicit, or a training
profile's) with what the checkpoint shows, naming the keys behind every disagreement;
`check_keys` makes sure every checkpoint entry is used and none is missing; `build`
makes the registered model with `sisr.model.build`, so every ported model is an
`SRModel` with its builder record; `fill` sets every weighted layer, or names the layer
that is left empty.
"""

import logging
import math
from typing import NamedTuple

from sisr.port.request import model_name, with_profile

log = logging.getLogger(__name__)

SCALING = "res_block_scaling"


class Ported(NamedTuple):
    """What the port made: the model, its plan, and the residual scaling used and why."""

    model: object
    plan: object
    res_block_scaling: object  # float, or None (no scaling; also for models without it)
    scaling_origin: str  # "given", "given by profile '<name>'", "read from the ..." or "assumed"
    assumption: str = ""  # why an assumed scaling was chosen

    @property
    def arch(self):
        """The plan (the name `port_checkpoint` results had before formats had plans)."""
        return self.plan

    def scaling_note(self, override="res_block_scaling"):
        """E.g. 'residual scaling 0.1 (assumed: not stored in the checkpoint; ...)'; None
        for a model without residual scaling."""
        from sisr.model import get_spec

        if SCALING not in get_spec(self.plan.model).arguments():
            return None
        value = "none" if self.res_block_scaling is None else f"{self.res_block_scaling:g}"
        if self.scaling_origin != "assumed":
            return f"residual scaling {value} ({self.scaling_origin})"
        why = f"{self.assumption}; " if self.assumption else ""
        return (f"residual scaling {value} (assumed: {why}not stored in the checkpoint; "
                f"{override} to override)")


def _fail(plan, message):
    """The plan's error, naming the file it came from."""
    if plan.origin and plan.origin not in message:
        message = f"{plan.origin}: {message}"
    return plan.error(message)


def _same(a, b):
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b))
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) if numbers else a == b


def check(plan, requested=None, model=None, profile=None):
    """The builder arguments to build `plan` with, and where the residual scaling came from.

    Args:
        plan: a format's `Plan`.
        requested: builder arguments asked for (None values are not asked for).
        model: the model asked for (any spelling `get_spec` accepts), or None.
        profile: a training profile name or JSON path; its model and builder arguments
            are checked too (explicit ones win), its `scales` must include the scale.

    Returns:
        (builder arguments, origin of each argument not read from the checkpoint).

    Raises:
        plan.error: naming every requested value the checkpoint contradicts.
    """
    from sisr.model import get_spec

    allowed = get_spec(plan.model).arguments()
    requested = {k: v for k, v in (requested or {}).items() if v is not None}
    origins = {k: "given" for k in requested}
    scales = None
    if profile is not None:
        keys = [k for k in allowed if k != "scale"]
        explicit = set(requested)
        model, requested, values = with_profile(profile, model, requested, keys,
                                                error=plan.error)
        for key in keys:
            if key not in explicit and key in values:  # null there means none
                origins[key] = f"given by profile {profile!r}"
        # A profile's scale is a default for training; any scale it lists fits.
        scales = values.get("scales") or ([values["scale"]] if "scale" in values else None)
    problems = []
    if model is not None and model_name(model) != plan.model:
        problems.append(f"model: requested {model!r}, {plan.claim('model')}")
    for key, value in requested.items():
        if key not in allowed:
            problems.append(f"{key}: {plan.model} has no such argument")
        elif key in plan.args and not _same(value, plan.args[key]):
            problems.append(f"{key}: requested {value!r}, {plan.claim(key)}")
    if "scale" not in requested and scales is not None and \
            plan.args.get("scale") is not None and plan.args["scale"] not in scales:
        problems.append(f"scale: profile {profile!r} has scales {scales}, "
                        f"{plan.claim('scale')}")
    if problems:
        raise _fail(plan, f"the {plan.source} {plan.holder} does not match the requested "
                          "architecture: " + "; ".join(problems))
    args = dict(plan.args)
    for key, (value, _) in plan.assumed.items():
        if key not in plan.args and key not in origins:
            args[key], origins[key] = value, "assumed"
    for key, value in requested.items():
        if key not in plan.args:
            args[key] = value
    for key in origins:
        if key not in args and key in allowed:  # a profile's null: the builder's default
            args[key] = allowed[key]
    return args, origins


def check_keys(plan):
    """Raises plan.error unless the fills and checks use every key and only those."""
    used = set(plan.checked_keys)
    for fill in plan.fills:
        used.update(fill.keys)
    unused = sorted(set(plan.keys) - used, key=str)
    if unused:
        raise _fail(plan, f"unexpected key(s) in the {plan.source} {plan.holder}, not part "
                          f"of {plan.model} {plan.args}: {', '.join(map(str, unused))}")
    missing = sorted(used - set(plan.keys), key=str)
    if missing:
        raise _fail(plan, f"missing key(s) in the {plan.source} {plan.holder} for "
                          f"{plan.model} {plan.args}: {', '.join(map(str, missing))}")


def build(plan, args):
    """The registered model `plan.model` built with `args` (an `SRModel`)."""
    from sisr.model import build as build_model
    from sisr.model import get_spec

    spec = get_spec(plan.model)
    if plan.source not in _layout_names(spec):
        raise _fail(plan, f"the {plan.source} format made a plan for {plan.model}, whose "
                          "registry entry does not list that layout")
    if spec.scales and "scale" not in args:  # e.g. VDSR's, whose network has no upsampler
        raise _fail(plan, f"the {plan.source} {plan.holder} does not show the scale: give "
                          f"it (--scale, one of {', '.join(map(str, spec.scales))})")
    try:
        return build_model(plan.model, **args)
    except (TypeError, ValueError) as err:
        raise _fail(plan, f"cannot build {plan.model} {args}: {err}") from None


def _layout_names(spec):
    from sisr.port.formats import load

    return {load(layout).NAME for layout in spec.layouts}


def fill(model, plan):
    """Sets every weighted layer of `model` from the plan's fills.

    Every fill whose shapes are known unread is checked against its sisr layer before any
    fill's arrays are read: a file that declares other weights is refused unread.
    """
    targets, named = [], set()
    for item in plan.fills:
        if item.layer in named:
            raise _fail(plan, f"{item.what}: sisr's {item.layer} is filled twice")
        named.add(item.layer)
        try:
            layer = model.get_layer(item.layer)
        except ValueError:
            raise _fail(plan, f"{item.what}: the sisr {plan.model} model has no layer "
                              f"{item.layer!r}") from None
        shapes = item.shapes()
        if shapes is not None:
            _check_shapes(plan, item, layer, shapes)
        targets.append((item, layer))
    filled = set()
    for item, layer in targets:
        values = item.arrays()
        _check_shapes(plan, item, layer, [tuple(v.shape) for v in values])
        layer.set_weights(values)
        filled.add(item.layer)
    unfilled = [layer.name for layer in model.layers if layer.weights and layer.name not in filled]
    if unfilled:
        raise _fail(plan, f"no weights in the {plan.holder} for sisr layer(s) "
                          f"{', '.join(unfilled)}")


def _check_shapes(plan, item, layer, shapes):
    expected = [tuple(w.shape) for w in layer.weights]
    if expected != [tuple(s) for s in shapes]:
        raise _fail(plan, f"{item.what} does not fit sisr's {item.layer} (weights "
                          f"{expected}) of {plan.model} {plan.args}")


def _branch_request(plan, requested):
    """(the request without its scale, the scale) for a multi-scale plan (`scale` None,
    one output per `branch_scales`): the port builds every branch, then keeps the
    requested one; (requested, None) otherwise."""
    requested = dict(requested or {})
    if "scale" not in plan.args or plan.args["scale"] is not None \
            or requested.get("scale") is None:
        return requested, None
    scale = requested.pop("scale")
    if scale not in plan.args.get("branch_scales", ()):
        raise _fail(plan, f"the {plan.source} {plan.holder} does not match the requested "
                          f"architecture: scale: requested {scale!r}, "
                          f"{plan.claim('branch_scales')}")
    return requested, scale


def run(plan, requested=None, model=None, profile=None):
    """Checks, builds and fills `plan`; returns a `Ported`."""
    from sisr.port.plan import PortError

    try:
        requested, branch = _branch_request(plan, requested)
        args, origins = check(plan, requested, model, profile)
        check_keys(plan)
        keras_model = build(plan, args)
        fill(keras_model, plan)
        if branch is not None:
            from sisr.model import get_spec

            keras_model = get_spec(plan.model).at_scale(keras_model, branch)
    except PortError as err:
        raise _fail(plan, str(err)) from None
    for note in plan.notes:
        log.warning("%s: %s", plan.origin or plan.source, note)
    if plan.args.get(SCALING) is not None:
        origin = f"read from the {plan.holder}"
    else:
        origin = origins.get(SCALING, "assumed")
    assumption = plan.assumed.get(SCALING, (None, ""))[1] if origin == "assumed" else ""
    ported = Ported(keras_model, plan, args.get(SCALING), origin, assumption)
    note = ported.scaling_note()
    unit = {"state_dict": "keys", "graph": "nodes"}.get(plan.holder, "layers")
    log.info("ported %d %s of the %s %s into %s %s%s", len(plan.keys), unit, plan.source,
             plan.kind, plan.model, {k: v for k, v in args.items()},
             f", {note}" if note else "")
    return ported
