"""Reading the functional graph of a serialised Keras model (`model.get_config()`)."""


def keras_histories(value):
    """Every `keras_history` list `[layer name, node index, tensor index]` of the tensors
    referenced inside a serialised node (or any part of a functional config), in order.
    The lists are the config's own: changing one rewires the config."""
    if isinstance(value, dict):
        config = value.get("config")
        if isinstance(config, dict) and "keras_history" in config:
            yield config["keras_history"]
            return
        for item in value.values():
            yield from keras_histories(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from keras_histories(item)
