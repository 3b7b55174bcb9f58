"""`SRModel`: a functional Keras model that says what it is.

Every sisr builder returns an `SRModel`, which records the registered builder's name and
its arguments in the model's config, so that a model loaded from a `.keras` file (in safe
mode: it is a registered class) still knows its architecture and scale:

    info = model_info(sisr.load_model("best.keras"))
    info["builder"], info["arguments"], info["scale"]   # "wdsr_b", {...}, 2
"""

import keras


@keras.saving.register_keras_serializable(package="sisr")
class SRModel(keras.Model):
    """A functional model with the name and arguments of the builder that made it.

    Args:
        inputs, outputs: as for a functional `keras.Model`.
        builder: the registered builder's name (`sisr.model.MODELS`).
        arguments: the builder's keyword arguments (JSON values).
        **kwargs: passed to `keras.Model` (e.g. `name`).
    """

    # (*args, **kwargs): the constructor Keras recognises as functional when it serialises.
    def __init__(self, *args, builder=None, arguments=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.builder = builder
        self.arguments = dict(arguments or {})

    def get_config(self):
        config = super().get_config()
        config.update(builder=self.builder, arguments=dict(self.arguments))
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        builder, arguments = config.pop("builder", None), config.pop("arguments", None)
        # The functional part is rebuilt by keras.Model; the record is set afterwards.
        model = super().from_config(config, custom_objects=custom_objects)
        model.builder, model.arguments = builder, dict(arguments or {})
        return model


def model_info(model):
    """`{"builder", "arguments", "scale"}` of a model built by sisr, else None.

    `scale` is None for models without one (the discriminator).
    """
    builder = getattr(model, "builder", None)
    if not isinstance(model, SRModel) or not builder:
        return None
    arguments = dict(model.arguments)
    return {"builder": builder, "arguments": arguments, "scale": arguments.get("scale")}
