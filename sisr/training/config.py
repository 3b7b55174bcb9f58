"""Training profiles: flat JSON files whose keys are builder and trainer arguments.

A profile is looked up by name among the profiles that ship with sisr (package data in
`sisr/profiles/`) or in `$SISR_PROFILES`, or given as a
path to a `.json` file. Command-line values override profile values; the result is
validated and written into the run directory as `config.json`.

Loss, optimiser, strategy and initialisation names are the keys of the tables in
`sisr.training.recipe`. A configuration with a `gan_generator` is an SRGAN fine-tuning one
(`python -m sisr.train_gan`) and also takes the `gan_*` keys of `GAN_DEFAULTS`.
"""

import json
import math
import os

from sisr.errors import UsageError
from sisr.training.recipe import INITS, LOSSES, OPTIMIZERS, STRATEGIES

# Package data: sisr/profiles/ in a checkout and in an installed wheel alike.
PROFILE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "profiles")

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")

# Trainer keys and their defaults; builder keys come from the model's builder signature.
TRAINER_DEFAULTS = {
    "model": None,
    "scale": 2,
    # Multi-scale training (a model with several scales, e.g. MDSR): the scales drawn per
    # batch; null = single-scale training of `scale` (`--scale 2+3+4` sets both).
    "train_scales": None,
    "scales": None,  # every scale of the registry (`resolve`)
    "dataset": "demo",
    "downgrade": "bicubic",
    "degradation": None,     # a preset name, .json file or object: LR made on the fly
    "train_images": None,
    "valid_images": None,
    "loss": "l1",
    "optimizer": "adam",
    "learning_rate": 1e-4,
    "lr_decay_steps": [],
    "lr_decay_factor": 0.5,
    "epochs": 300,
    "steps_per_epoch": 1000,
    "batch_size": 16,
    "lr_patch": 48,
    "valid_crop": 96,
    "benchmark": False,
    "seed": None,
    "precision": "float32",
    "strategy": "default",
    "pretrained_model": None,
    "init": "default",
    "profile": None,
}

# GAN fine-tuning keys and their defaults (the SRGAN paper's settings), taken by a
# configuration with a `gan_generator`; `python -m sisr.train_gan` gives some as flags
# (`--label-noise` for `gan_label_noise`, ...). A profile carrying `gan_*` keys is a GAN
# recipe (realesrgan-x4, esrgan-x4): its keys replace these defaults and GAN_SCHEDULE.
GAN_DEFAULTS = {
    "gan_generator": None,            # the generator's profile (its model a GAN generator)
    # The content loss: SRGAN's MSE of VGG19 features (VGG22 or VGG54, after ReLU, / 12.75)
    # or "perceptual", BasicSR's PerceptualLoss (L1 of pre-activation VGG19 features of
    # the layers of `gan_perceptual_layers`, ImageNet-normalised input).
    "gan_content_loss": "VGG54",
    "gan_perceptual_layers": {"conv5_4": 1.0},  # layer: weight (gan_content_loss perceptual)
    "gan_vgg_weights": None,          # VGG19 weights file; None: the Keras cache
    "gan_content_weight": 1.0,        # generator loss = this x content + ...
    "gan_adversarial_weight": 1e-3,   # ... + this x adversarial ...
    "gan_pixel_weight": 0.0,          # ... + this x pixel loss (0: none)
    "gan_pixel_loss": "l1",           # l1 or mse, on BasicSR's [0, 1] scale
    # The adversarial loss: "bce" (SRGAN's, D outputs probabilities), "vanilla" (BCE with
    # logits, BasicSR's GANLoss vanilla) or "ragan" (ESRGAN's relativistic average GAN).
    "gan_adversarial_loss": "bce",
    "gan_discriminator": "discriminator",  # its registry name
    "gan_discriminator_filters": 64,  # filters of the discriminator's first block
    "gan_label_noise": 0.0,           # D's targets drawn from U(1 - n, 1) and U(0, n)
    "gan_label_smoothing": 0.0,       # D's real target 1 - s
    "gan_usm_targets": [],            # losses (pixel, content, adversarial) on USM-sharpened HR
    "gan_ema_decay": 0.0,             # EMA of the generator's weights, saved as the model
    "gan_adam_betas": [0.9, 0.999],   # Adam's betas of both optimizers
}
# What a discriminator of each adversarial loss outputs, and the discriminators known.
GAN_ADVERSARIAL_LOSSES = ("bce", "vanilla", "ragan")
GAN_DISCRIMINATORS = {"discriminator": "probability", "vgg-discriminator": "logits",
                      "unet-discriminator-sn": "logits"}
GAN_PIXEL_LOSSES = ("l1", "mse")
GAN_USM_TARGETS = ("pixel", "content", "adversarial")
PERCEPTUAL_LAYERS = tuple(f"conv{b}_{c}" for b, n in ((1, 2), (2, 2), (3, 4), (4, 4), (5, 4))
                          for c in range(1, n + 1))
# SRGAN fine-tuning's scale and schedule (`sisr.training.gan`); the generator's profile
# supplies everything else. Validation uses LR centre crops of 48 (HR 192): enough to
# follow PSNR.
GAN_SCALE = 4
GAN_SCHEDULE = {"scale": GAN_SCALE, "epochs": 200, "steps_per_epoch": 1000, "batch_size": 16,
                "learning_rate": 1e-4, "lr_decay_steps": [100000], "lr_decay_factor": 0.1,
                "lr_patch": 24, "valid_crop": 48}


# What a resumed run may change: everything else comes from RUN_DIR/config.json.
RESUME_KEYS = ("epochs", "precision", "strategy")


class ConfigError(UsageError):
    """A profile or command-line value that cannot be used."""


class Configuration(dict):
    """A resolved configuration (a plain JSON dict) that also knows where each value came
    from: `origins` maps keys to phrases naming them and their source, such as
    "--set num_filters=64" or "`num_filters` in profile edsr.json", for error messages."""

    def __init__(self, *args, origins=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.origins = dict(origins or {})


def profile_dir():
    return os.environ.get("SISR_PROFILES", PROFILE_DIR)


def list_profiles():
    """Names of the profiles in the profile folder, sorted."""
    folder = profile_dir()
    if not os.path.isdir(folder):
        return []
    return sorted(f[:-5] for f in os.listdir(folder) if f.endswith(".json"))


def profile_path(name_or_path):
    """(path, name) of a profile given by name or path."""
    if name_or_path.endswith(".json") or os.sep in name_or_path:
        return name_or_path, os.path.splitext(os.path.basename(name_or_path))[0]
    return os.path.join(profile_dir(), f"{name_or_path}.json"), name_or_path


def load_profile(name_or_path):
    """Reads a profile by name or path; returns (name, dict)."""
    path, name = profile_path(name_or_path)
    if not os.path.isfile(path):
        known = ", ".join(list_profiles()) or f"(none found in {profile_dir()})"
        raise ConfigError(f"unknown profile {name_or_path!r}; known profiles: {known}")
    try:
        with open(path) as f:
            values = json.load(f)
    except json.JSONDecodeError as err:
        raise ConfigError(f"profile {path} is not valid JSON: {err}") from err
    if not isinstance(values, dict):
        raise ConfigError(f"profile {path} must hold a JSON object of keys and values")
    return name, values


def _check_type(key, value, kind, allow_none=False):
    if value is None and allow_none:
        return
    ok = isinstance(value, kind) and not (isinstance(value, bool) and kind is not bool)
    if not ok:
        raise ConfigError(f"`{key}` must be {getattr(kind, '__name__', kind)}, got {value!r}")


def _flag(key):
    """The `python -m sisr.train_gan` flag of a `gan_*` key."""
    return "--" + key[len("gan_"):].replace("_", "-")


def get_spec(name):
    """`sisr.model.get_spec`, imported when first needed: it loads Keras, which the CLIs'
    `--help` does without."""
    from sisr.model import get_spec as registered

    return registered(name)


def gan_generator_profiles():
    """Names of the profiles that `python -m sisr.train_gan --generator` may fine-tune:
    those whose model's registry entry is a GAN generator."""
    names = []
    for name in list_profiles():
        try:
            if get_spec(load_profile(name)[1].get("model")).gan_generator:
                names.append(name)
        except (ConfigError, ValueError):
            continue  # a broken profile is reported when it is used
    return names


def _not_a_gan_generator(generator, reason):
    return ConfigError(f"--generator {generator}: {reason}; profiles of GAN generators: "
                       f"{', '.join(gan_generator_profiles()) or '(none)'}")


def gan_generator_model(generator):
    """The name of the registered model that the profile `generator` builds; ConfigError
    unless the profile exists and its model is a GAN generator (`ModelSpec.gan_generator`)."""
    try:
        _, values = load_profile(generator)
    except ConfigError as err:
        raise _not_a_gan_generator(generator, str(err).split(";")[0]) from None
    try:
        spec = get_spec(values.get("model"))
    except ValueError as err:
        raise _not_a_gan_generator(generator, str(err).split(";")[0]) from None
    if not spec.gan_generator:
        raise _not_a_gan_generator(generator, f"its model {spec.name} is not a GAN generator")
    return spec.name


def _check_gan(config, spec):
    """Raises ConfigError for `gan_*` settings that SRGAN fine-tuning cannot use."""
    generator = config["gan_generator"]
    if not isinstance(generator, str) or not generator:
        raise ConfigError(f"`gan_generator` must be a profile name, got {generator!r}")
    if not spec.gan_generator:
        raise _not_a_gan_generator(generator, f"its model {spec.name} is not a GAN generator")
    from sisr.losses import VGG_LAYERS

    contents = (*VGG_LAYERS, "perceptual")
    if config["gan_content_loss"] not in contents:
        raise ConfigError(f"--content-loss must be {' or '.join(VGG_LAYERS)} (SRGAN's VGG19 "
                          "features) or perceptual (BasicSR's perceptual loss), got "
                          f"{config['gan_content_loss']!r} (config key `gan_content_loss`)")
    _check_type("gan_vgg_weights", config["gan_vgg_weights"], str, allow_none=True)
    for key, allowed in (("gan_adversarial_loss", GAN_ADVERSARIAL_LOSSES),
                         ("gan_discriminator", tuple(GAN_DISCRIMINATORS)),
                         ("gan_pixel_loss", GAN_PIXEL_LOSSES)):
        if config[key] not in allowed:
            raise ConfigError(f"`{key}` must be one of {', '.join(allowed)}, got "
                              f"{config[key]!r}")
    probability = GAN_DISCRIMINATORS[config["gan_discriminator"]] == "probability"
    if probability != (config["gan_adversarial_loss"] == "bce"):
        raise ConfigError(
            f"`gan_adversarial_loss` {config['gan_adversarial_loss']} does not fit "
            f"`gan_discriminator` {config['gan_discriminator']}: `bce` takes the "
            "probabilities of `discriminator`, `vanilla` and `ragan` the logits of "
            f"{' or '.join(k for k, v in GAN_DISCRIMINATORS.items() if v == 'logits')}")
    layers = config["gan_perceptual_layers"]
    if not isinstance(layers, dict) or not layers or any(
            k not in PERCEPTUAL_LAYERS or isinstance(v, bool) or not isinstance(v, (int, float))
            or v < 0 for k, v in layers.items()):
        raise ConfigError(f"`gan_perceptual_layers` must map VGG19 layers ({PERCEPTUAL_LAYERS[0]}"
                          f" ... {PERCEPTUAL_LAYERS[-1]}) to weights >= 0, got {layers!r}")
    targets = config["gan_usm_targets"]
    if not isinstance(targets, list) or any(t not in GAN_USM_TARGETS for t in targets):
        raise ConfigError(f"`gan_usm_targets` must be a list of {', '.join(GAN_USM_TARGETS)}"
                          f", got {targets!r}")
    value = config["gan_ema_decay"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ConfigError(f"`gan_ema_decay` must be in [0, 1) (0: no EMA), got {value!r}")
    betas = config["gan_adam_betas"]
    if not isinstance(betas, list) or len(betas) != 2 or any(
            isinstance(b, bool) or not isinstance(b, (int, float)) or not 0 <= b < 1
            for b in betas):
        raise ConfigError(f"`gan_adam_betas` must be two numbers in [0, 1), got {betas!r}")
    for key, low, high in (("gan_label_noise", 0, 0.5), ("gan_label_smoothing", 0, 0.5),
                           ("gan_adversarial_weight", 0, math.inf),
                           ("gan_content_weight", 0, math.inf),
                           ("gan_pixel_weight", 0, math.inf)):
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not low <= value < high:
            bound = f"in [{low}, {high})" if high < math.inf else f">= {low}"
            raise ConfigError(f"{_flag(key)} must be {bound}, got {value!r} "
                              f"(config key `{key}`)")
    value = config["gan_discriminator_filters"]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"--discriminator-filters must be an int >= 1, got {value!r} "
                          "(config key `gan_discriminator_filters`)")


def _check_builder(config, spec):
    """Raises ConfigError, naming the argument and where it came from, for builder
    arguments that the model's builder refuses (its own checks, run without building)."""
    from sisr.model.sizing import refused_argument

    refused = refused_argument(spec, builder_kwargs(config))
    if refused is None:
        return
    key, error = refused
    where = config.origins.get(key, f"`{key}`") if key else f"model {spec.name}"
    raise ConfigError(f"{where}: {error}")


def resolve(profile=None, overrides=None, base=None, origins=None, base_origin=None):
    """Merges defaults, `base` (a saved configuration), a profile and overrides (None
    values are ignored) and validates, builder arguments included (by the builder's own
    checks, without building the model).

    A configuration with a `gan_generator` also takes the `gan_*` keys (`GAN_DEFAULTS`).
    `origins` names where override keys came from ("--set num_filters=64"), `base_origin`
    where `base` came from (a file), for error messages. Returns the resolved
    `Configuration` (a plain JSON-serialisable dict with `origins`).
    """
    config = Configuration({**TRAINER_DEFAULTS, **(base or {})})
    if config["scales"] is None:
        from sisr.model.registry import SCALES

        config["scales"] = list(SCALES)
    if base_origin:
        config.origins.update((k, f"`{k}` in {base_origin}") for k in base or {})
    profile_keys = ()
    if profile is not None:
        name, values = load_profile(profile)
        profile_keys = tuple(values)
        config.update(values)
        config["profile"] = name
        path = profile_path(profile)[0]
        config.origins.update((k, f"`{k}` in profile {path}") for k in values)
    for key, value in (overrides or {}).items():
        if value is not None:
            config[key] = value
            if key in (origins or {}):
                config.origins[key] = origins[key]
    if not config["model"]:
        raise ConfigError("no model given: use --profile (or a profile with a `model` key)")

    try:
        spec = get_spec(config["model"])
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if not spec.generator:
        raise ConfigError(f"model {spec.name!r} is not a generator and cannot be trained alone")
    config["model"] = spec.name
    builder_args = {k: v for k, v in spec.arguments().items() if k != "scale"}
    for key, default in builder_args.items():
        config.setdefault(key, default)
    known = {**TRAINER_DEFAULTS, **builder_args}
    gan = config.get("gan_generator") is not None
    if gan:
        for key, default in GAN_DEFAULTS.items():
            config.setdefault(key, default)
        known.update(GAN_DEFAULTS)
    unknown = sorted(set(config) - set(known))
    # A recipe profile (gan_* keys in its file) run by `train`; gan_* overrides are unknown.
    if unknown and not gan and all(k.startswith("gan_") and k in profile_keys for k in unknown):
        raise ConfigError(f"profile {config['profile']} is a GAN recipe (its gan_* keys): "
                          f"python -m sisr.train_gan --generator {config['profile']} "
                          "--pretrained-model MODEL trains it")
    if unknown:
        raise ConfigError(
            f"unknown key(s) for model {spec.name}: "
            + ", ".join(f"{k} ({config.origins[k]})" if k in config.origins else k
                        for k in unknown)
            + f"; allowed: {', '.join(sorted(known))}"
            + ("" if gan else " (gan_* keys: python -m sisr.train_gan)")
        )

    _resolve_train_scales(config, spec)
    for key in ("epochs", "steps_per_epoch", "batch_size", "lr_patch", "scale"):
        _check_type(key, config[key], int)
        if config[key] < 1:
            raise ConfigError(f"`{key}` must be at least 1, got {config[key]}")
    _check_type("valid_crop", config["valid_crop"], int, allow_none=True)
    if config["valid_crop"] is not None and config["valid_crop"] < 1:
        raise ConfigError(f"`valid_crop` must be at least 1 (or null: whole images), got "
                          f"{config['valid_crop']}")
    _check_type("seed", config["seed"], int, allow_none=True)
    if config["degradation"] is not None:
        _check_degradation(config)
    scales = config["scales"]
    if not isinstance(scales, list) or not scales or any(
            isinstance(s, bool) or not isinstance(s, int) for s in scales):
        raise ConfigError(f"`scales` must be a list of ints, got {scales!r}")
    if config["scale"] not in config["scales"]:
        raise ConfigError(
            f"scale {config['scale']} is not supported by profile "
            f"{config['profile'] or config['model']}; supported scales: {config['scales']}"
        )
    if config["scale"] not in spec.scales:
        raise ConfigError(f"model {spec.name} supports scales {list(spec.scales)}, "
                          f"not {config['scale']}")
    for key, allowed in (("precision", PRECISIONS), ("strategy", STRATEGIES),
                         ("loss", LOSSES), ("optimizer", OPTIMIZERS), ("init", INITS)):
        if not isinstance(config[key], str) or config[key] not in allowed:
            raise ConfigError(f"`{key}` must be one of {', '.join(allowed)}, got {config[key]!r}")
    if config.get("normalization", "weight") in ("none", "batch") \
            and config["optimizer"] == "weight_norm_adam":
        # A WDSR built for another normalisation (sisr.model.wdsr): weight norm would
        # still be applied, by the optimiser.
        where = config.origins.get("normalization", "`normalization`")
        raise ConfigError(f"{where}: normalization {config['normalization']} with optimizer "
                          "weight_norm_adam would still weight-normalise; set optimizer adam")
    if config["init"] != "default" and config["pretrained_model"]:
        raise ConfigError(f"`init` {config['init']} would overwrite the weights of the "
                          f"pretrained model {config['pretrained_model']}; use one or the other")
    for key in ("learning_rate", "lr_decay_factor"):
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 \
                or not math.isfinite(value):
            raise ConfigError(f"`{key}` must be a positive finite number, got {value!r}")
    steps = config["lr_decay_steps"]
    if not isinstance(steps, list) or any(isinstance(s, bool) or not isinstance(s, int)
                                          or s < 1 for s in steps) or steps != sorted(steps):
        raise ConfigError(f"`lr_decay_steps` must be an increasing list of positive ints, "
                          f"got {steps!r}")
    if gan:
        _check_gan(config, spec)
    _check_builder(config, spec)
    return config


def _resolve_train_scales(config, spec):
    """Checks `train_scales`; one scale means single-scale training of it (`scale`), more
    set `scale` to the first (the run's reference scale)."""
    scales = config["train_scales"]
    if scales is None:
        return
    where = config.origins.get("train_scales", "`train_scales`")
    if not isinstance(scales, list) or not scales or any(
            isinstance(s, bool) or not isinstance(s, int) for s in scales) \
            or len(set(scales)) != len(scales):
        raise ConfigError(f"{where}: must be a list of distinct scales, got {scales!r}")
    if len(scales) == 1:
        config["scale"], config["train_scales"] = scales[0], None
        return
    if spec.at_scale is None:
        raise ConfigError(f"{where}: model {spec.name} has one scale per network; only a "
                          "multi-scale model (e.g. mdsr) trains several scales at once")
    for scale in scales:
        if scale not in spec.scales or scale not in config["scales"]:
            raise ConfigError(f"{where}: scale {scale} is not supported by model "
                              f"{spec.name} / profile {config['profile'] or spec.name}; "
                              f"supported: {sorted(set(spec.scales) & set(config['scales']))}")
    if config["strategy"] != "default":
        raise ConfigError(f"{where}: multi-scale training runs on one device; --strategy "
                          f"{config['strategy']} is not supported with it")
    if config["init"] != "default":
        raise ConfigError(f"{where}: `init` {config['init']} is not supported with "
                          "multi-scale training")
    config["scale"] = scales[0]


def _check_degradation(config):
    """Validates `degradation`; a file's parameters are kept in the configuration, so a
    resumed run does not need the file."""
    from sisr.data.degradations import PRESET_NAMES, DegradationError, load_preset

    value = config["degradation"]
    try:
        preset = load_preset(value)
    except DegradationError as err:
        where = config.origins.get("degradation", "`degradation`")
        raise ConfigError(f"{where}: {err}") from None
    if not (isinstance(value, str) and value in PRESET_NAMES):
        config["degradation"] = preset


def builder_kwargs(config):
    """The builder keyword arguments of a resolved configuration."""
    spec = get_spec(config["model"])
    return {k: config[k] for k in spec.arguments() if k in config}


def learning_rate_values(config):
    """Piecewise-constant learning rates: lr, lr*f, lr*f^2, ... at `lr_decay_steps`."""
    lr, factor = float(config["learning_rate"]), float(config["lr_decay_factor"])
    return [lr * factor ** i for i in range(len(config["lr_decay_steps"]) + 1)]


def read_run_config(run_dir):
    """The `config.json` of a run directory (a JSON object), for `--resume`."""
    path = os.path.join(run_dir, "config.json")
    if not os.path.isfile(path):
        raise ConfigError(f"--resume {run_dir}: not a run directory (no config.json)")
    try:
        with open(path) as f:
            saved = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"--resume {run_dir}: cannot read {path}: {err}") from None
    if not isinstance(saved, dict):
        raise ConfigError(f"--resume {run_dir}: {path} does not hold a JSON object")
    return flatten_gan_section(saved)


def flatten_gan_section(saved):
    """Converts the nested `"gan": {...}` section of runs saved by older versions of sisr
    into the flat `gan_*` keys (in place; returns `saved`)."""
    section = saved.get("gan")
    if isinstance(section, dict):
        del saved["gan"]
        for key, value in section.items():
            saved.setdefault(f"gan_{key}", value)
    return saved


def resume_config(run_dir, changes=None, also_allowed=()):
    """The saved configuration of a run directory, with `changes` to `RESUME_KEYS`.

    Raises ConfigError for any other change, and for switching mixed_float16 on or off:
    its loss scaling adds optimizer state that a backup of the other kind cannot restore.
    `also_allowed` names further flags that the caller applies itself (for the message).
    """
    saved = read_run_config(run_dir)
    changes = {k: v for k, v in (changes or {}).items() if v is not None}
    refused = sorted(set(changes) - set(RESUME_KEYS))
    if refused:
        allowed = [f"--{k.replace('_', '-')}" for k in RESUME_KEYS + tuple(also_allowed)]
        raise ConfigError(
            "--resume takes the configuration from the run directory; only "
            + ", ".join(allowed[:-1]) + " and " + allowed[-1]
            + " may be given with it, not "
            + ", ".join(f"--{k.replace('_', '-')}" for k in refused))
    precision = changes.get("precision")
    if precision is not None and \
            (precision == "mixed_float16") != (saved.get("precision") == "mixed_float16"):
        raise ConfigError(f"--precision {precision}: the run was saved with "
                          f"{saved.get('precision')}; mixed_float16 cannot be switched on "
                          "or off when resuming (its loss scale is optimizer state)")
    return resolve(None, changes, base=saved,
                   base_origin=os.path.join(run_dir, "config.json"))

