"""What a format module says about a checkpoint: the `Plan` that the pipeline carries out.

A format module (`sisr.port.formats`) reads nothing into Keras: its `describe` returns a
`Plan` (the registered model, the builder arguments the checkpoint shows and why, and
one `Fill` per sisr layer), and `sisr.port.pipeline` checks, builds and fills it.
"""

import dataclasses

from sisr.errors import SisrError


class PortError(SisrError, ValueError):
    """A checkpoint that does not match the requested or any supported architecture."""


@dataclasses.dataclass
class Fill:
    """The weights of one sisr layer, from the checkpoint entries `keys`.

    `what` names the stored weights in error messages; `arrays()` returns them converted,
    in the order of the sisr layer's `get_weights()`; `shapes()` their shapes, if known
    before they are read (the pipeline checks them against the sisr model first).
    """

    layer: str
    keys: tuple
    what: str

    def shapes(self):
        """The shapes `arrays()` will have, known without reading them; None if unknown."""
        return None

    def arrays(self):
        raise NotImplementedError


@dataclasses.dataclass
class ArrayFill(Fill):
    """A `Fill` whose arrays are converted already."""

    values: list = dataclasses.field(default_factory=list)

    def shapes(self):
        return [tuple(v.shape) for v in self.values]

    def arrays(self):
        return list(self.values)


@dataclasses.dataclass
class Plan:
    """How to make the sisr model of one checkpoint.

    Attributes:
        source: the format's `NAME`.
        model: a registered model name (`sisr.model.MODELS`).
        args: builder arguments read from the checkpoint.
        evidence: argument (or "model") -> what the checkpoint shows, as a clause that
            follows "requested X, " ("the state_dict has 4 (tail.0.0.weight, ...)").
        fills: one `Fill` per weighted sisr layer.
        keys: every entry of the checkpoint; each must be used by a fill or `checked_keys`.
        checked_keys: entries consumed by checks rather than loaded.
        assumed: argument -> (value, why) for arguments the checkpoint does not store and
            the format assumes unless asked otherwise.
        notes: warnings to log (differences sisr cannot remove).
        kind: what was read ("state_dict", "weights", "full model").
        holder: how messages call the checkpoint ("state_dict", "file").
        origin: the file it came from (prefixes error messages), or None.
        error: the `PortError` subclass to raise.
    """

    source: str
    model: str
    args: dict
    fills: list
    keys: tuple
    evidence: dict = dataclasses.field(default_factory=dict)
    checked_keys: tuple = ()
    assumed: dict = dataclasses.field(default_factory=dict)
    notes: list = dataclasses.field(default_factory=list)
    kind: str = "state_dict"
    holder: str = "state_dict"
    origin: str = None
    error: type = PortError

    def claim(self, key):
        """What the checkpoint shows about `key` (see `evidence`)."""
        if key in self.evidence:
            return self.evidence[key]
        if key == "model":
            return f"the {self.holder} holds {self.model}"
        return f"the {self.holder} has {self.args[key]!r}"
