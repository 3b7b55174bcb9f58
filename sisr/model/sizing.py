"""A registered architecture's argument checks and parameter count, without its weights.

Builders are run in a Keras `StatelessScope` that defers every variable (no weight is
allocated) while a counter stands in for Keras' list of deferred variables: it adds up
their sizes and can stop the build at a limit. Stopping at the first weight runs exactly
the builder's own argument checks (builders check before they build); a full stateless
build counts the parameters of the model the arguments describe.

A very deep configuration would take as long to build statelessly as for real, so
`estimate_parameters` first interpolates the count from small probe builds: each integer
argument (other than `scale`) larger than three times its `ModelSpec.tiny` value is probed
at one, two and three times that value, and the count is interpolated as a polynomial of
degree two in each (exact for convolution widths, expansions and block counts).
"""

import contextlib
import dataclasses
import inspect
import itertools
import math
from fractions import Fraction

import keras
# Keras 3 keeps the variables deferred by a StatelessScope in this global list.
from keras.src.backend.common import global_state

_DEFERRED = "uninitialized_variables"
MAX_PROBED = 4  # integer arguments interpolated at once (3 ** 4 probe builds)


class LimitExceeded(Exception):
    """A stateless build went past its parameter limit (`count` so far)."""

    def __init__(self, count):
        super().__init__(f"more than {count} parameters")
        self.count = count


class _Counter(list):
    """Stands in for Keras' list of deferred variables: counts their elements and raises
    LimitExceeded past `limit` (they are not kept, so nothing ever initialises them)."""

    def __init__(self, limit):
        super().__init__()
        self.count, self.limit = 0, limit

    def append(self, variable):
        self.count += math.prod(int(d) for d in variable.shape)
        if self.limit is not None and self.count > self.limit:
            raise LimitExceeded(self.count)


@contextlib.contextmanager
def _stateless(limit=None):
    previous = global_state.get_global_attribute(_DEFERRED)
    counter = _Counter(limit)
    global_state.set_global_attribute(_DEFERRED, counter)
    try:
        with keras.StatelessScope(initialize_variables=False):
            yield counter
    finally:
        global_state.set_global_attribute(_DEFERRED, previous)


def builder_error(spec, kwargs, limit=-1):
    """The exception that `spec`'s builder raises for `kwargs` before its stateless build
    passes `limit` parameters, or None; nothing is allocated. The default stops at the
    first weight: the builder's own argument checks."""
    try:
        with _stateless(limit):
            spec.builder(**kwargs)
    except LimitExceeded:
        return None
    except Exception as err:  # whatever a builder raises for its arguments
        return err
    return None


def reference_arguments(spec, kwargs):
    """Arguments the builder is known to accept: its defaults and `tiny` configuration,
    with `kwargs`' scale."""
    reference = {k: v for k, v in spec.arguments().items()
                 if v is not inspect.Parameter.empty}
    reference.update(spec.tiny)
    if "scale" in kwargs:
        reference["scale"] = kwargs["scale"]
    return reference


def refused_argument(spec, kwargs, limit=-1):
    """`(argument, error)` for builder arguments that `spec`'s builder refuses (before its
    stateless build passes `limit` parameters: see `builder_error`), else None.

    `argument` is the one that the builder refuses on its own (with the other arguments at
    their reference values), or None if it refuses only their combination. None is also
    returned when the builder cannot be checked this way (it refuses its reference
    arguments when run statelessly)."""
    error = builder_error(spec, kwargs, limit)
    if error is None:
        return None
    reference = reference_arguments(spec, kwargs)
    if builder_error(spec, reference, limit) is not None:
        return None
    for key, value in kwargs.items():
        if key in reference and reference[key] == value and type(reference[key]) is type(value):
            continue
        alone = builder_error(spec, {**reference, key: value}, limit)
        if alone is not None:
            return key, alone
    return None, error


def count_parameters(spec, kwargs, limit=None):
    """The exact parameter count of `spec.builder(**kwargs)`, from a stateless build;
    raises LimitExceeded as soon as it passes `limit`."""
    with _stateless(limit) as counter:
        spec.builder(**kwargs)
    return counter.count


@dataclasses.dataclass(frozen=True)
class Estimate:
    """An interpolated parameter count, and the argument that contributes most to it (the
    one whose reduction to its `tiny` value lowers the count most; None if none)."""

    parameters: int
    driver: str | None


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _lagrange(x, base):
    """Weights of the values at base, 2 base, 3 base in the quadratic through them at x."""
    points = [base, 2 * base, 3 * base]
    weights = []
    for i, p in enumerate(points):
        w = Fraction(1)
        for j, q in enumerate(points):
            if j != i:
                w *= Fraction(x - q, p - q)
        weights.append(w)
    return weights


def estimate_parameters(spec, kwargs):
    """The parameter count of `spec.builder(**kwargs)` interpolated from probe builds (see
    the module's docstring); None if a probe fails or too many arguments need probing."""
    bases = {}
    for key, value in kwargs.items():
        base = spec.tiny.get(key, 1)
        if key != "scale" and _is_int(value) and _is_int(base) and base >= 1 \
                and value > 3 * base:
            bases[key] = base
    if len(bases) > MAX_PROBED:
        return None
    counts = {}
    try:
        for multiples in itertools.product((1, 2, 3), repeat=len(bases)):
            probe = dict(kwargs, **{k: m * b for (k, b), m in zip(bases.items(), multiples)})
            counts[multiples] = count_parameters(spec, probe)
    except Exception:  # a probe value the builder refuses: no estimate
        return None

    def at(point):
        weights = [_lagrange(point[k], b) for k, b in bases.items()]
        total = Fraction(0)
        for multiples, count in counts.items():
            term = Fraction(count)
            for w, m in zip(weights, multiples):
                term *= w[m - 1]
            total += term
        return max(int(total), max(counts.values()))

    point = {k: kwargs[k] for k in bases}
    parameters = at(point)
    driver, lowest = None, parameters
    for key, base in bases.items():
        reduced = at({**point, key: base})
        if reduced < lowest:
            driver, lowest = key, reduced
    return Estimate(parameters, driver)
