"""Reading PyTorch state_dicts from .npz, .safetensors and .pt/.pth files (with torch's
`torch.load(weights_only=True)` if it is installed, else as data by `sisr.port.torchfile`).

Every reader returns a flat `dict[str, np.ndarray]` with the original key names. The
common wrappers of training checkpoints (`{"state_dict": ...}`, BasicSR's
`{"params": ...}`, `module.` / `model.` key prefixes) are removed.
"""

import json
import logging
import os
import struct
import zipfile

import numpy as np

from sisr.errors import SisrError

log = logging.getLogger(__name__)

# Keys under which training scripts nest the weights. BasicSR stores `params` and, with
# an EMA of the weights, also `params_ema`; like BasicSR's loader, `params` comes first.
WRAPPER_KEYS = ("params", "params_ema", "state_dict", "model_state_dict", "model",
                "net", "network", "generator", "netG", "net_g")
# Prefixes added by nn.DataParallel / DistributedDataParallel and by wrapper modules.
STRIPPED_PREFIXES = ("module.", "model.")

_SAFETENSORS_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8,
    "U8": np.uint8, "BOOL": np.bool_,
}


class CheckpointError(SisrError, ValueError):
    """A file that cannot be read as a state_dict."""


def load_state_dict(path, param_key=None, prefer=(), quiet=False):
    """Reads a PyTorch state_dict from `.npz`, `.safetensors` or `.pt`/`.pth`.

    The format is recognised by the file's content, not its extension. Floating-point
    tensors come back as float32 arrays (half and bfloat16 are widened).

    Args:
        path: the checkpoint file.
        param_key: the entry of a wrapped checkpoint to use (e.g. "params" of a BasicSR
            file that also holds "params_ema"); by default the first of `prefer`, then
            of `WRAPPER_KEYS`, that the file has.
        prefer: entries to try first (Real-ESRGAN's formats prefer "params_ema").
        quiet: do not log that the EMA weights were left aside (the caller says it).

    Raises:
        FileNotFoundError: if `path` does not exist.
        CheckpointError: if the file is not a checkpoint, holds no tensors, or holds
            both a generator and a discriminator (unless `param_key` picks one).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    kind = _sniff(path)
    if kind == "npz":
        raw = _read_npz(path)
    elif kind == "safetensors":
        raw = _read_safetensors(path)
    elif kind == "torch":
        raw = _read_torch(path)
    else:
        raise CheckpointError(
            f"{path} is not a checkpoint: expected a .npz archive of arrays, a "
            ".safetensors file or a PyTorch .pt/.pth file"
        )
    return _as_state_dict(raw, path, param_key, prefer, quiet)


def _sniff(path):
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except zipfile.BadZipFile:
            return None
        if names and all(n.endswith(".npy") for n in names):
            return "npz"
        # torch.save's zip format: <archive>/data.pkl plus one file per storage.
        if any(n.endswith("data.pkl") for n in names):
            return "torch"
        return None
    if head[:1] == b"\x80":  # a pickle: torch's legacy (pre-1.6) format
        return "torch"
    if len(head) >= 9 and head[8:9] == b"{":  # 8-byte header size, then JSON
        return "safetensors"
    return None


def _check_npz_member(path, archive, info):
    """Raises CheckpointError unless the .npy member's header declares an array that its
    stored bytes can hold (read from the header, before any array is allocated)."""
    key = info.filename[:-4]
    try:
        with archive.open(info) as f:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read_header(f)
            offset = f.tell()
    except (ValueError, OSError, zipfile.BadZipFile) as err:
        raise CheckpointError(f"{path}: tensor {key!r}: not a valid .npy member ({err})") \
            from None
    count = 1
    for n in shape:
        count *= int(n)
    if count * dtype.itemsize != info.file_size - offset:
        raise CheckpointError(f"{path}: tensor {key!r} declares shape {tuple(shape)} "
                              f"{dtype} ({count * dtype.itemsize:,} bytes) but holds "
                              f"{info.file_size - offset:,} bytes")


def _read_npz(path):
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                _check_npz_member(path, archive, info)
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (ValueError, OSError, zipfile.BadZipFile) as err:
        raise CheckpointError(f"{path}: cannot read the .npz archive: {err}") from err


def _read_safetensors(path):
    """Parses the safetensors layout: u64 header size, JSON header, raw little-endian data."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        (header_size,) = struct.unpack("<Q", f.read(8))
        if header_size > size - 8:
            raise CheckpointError(f"{path}: safetensors header size {header_size} exceeds "
                                  f"the file size {size}")
        try:
            header = json.loads(f.read(header_size))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise CheckpointError(f"{path}: invalid safetensors header: {err}") from err
        data = f.read()
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: invalid safetensors header (not a JSON object)")
    arrays = {}
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        dtype, shape, begin, end = _safetensors_entry(path, key, entry, len(data))
        buffer = data[begin:end]
        if dtype == "BF16":
            # bfloat16 is the upper half of a float32.
            bits = np.frombuffer(buffer, dtype="<u2").astype(np.uint32) << 16
            array = bits.view(np.float32)
        elif dtype in _SAFETENSORS_DTYPES:
            array = np.frombuffer(buffer, dtype=np.dtype(_SAFETENSORS_DTYPES[dtype])
                                  .newbyteorder("<"))
        else:
            raise CheckpointError(f"{path}: tensor {key!r} has unsupported dtype {dtype}")
        arrays[key] = array.reshape(shape)
    return arrays


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _safetensors_entry(path, key, entry, size):
    """(dtype, shape, begin, end) of a header entry, checked: shape and offsets are
    non-negative ints, and the byte range is inside the data and fits the shape."""
    try:
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    except (TypeError, KeyError) as err:
        raise CheckpointError(f"{path}: tensor {key!r}: invalid safetensors entry") from err
    if not isinstance(shape, list) or not all(_is_int(n) and n >= 0 for n in shape):
        raise CheckpointError(f"{path}: tensor {key!r}: invalid shape {shape!r}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_int, offsets))):
        raise CheckpointError(f"{path}: tensor {key!r}: invalid data_offsets {offsets!r}")
    begin, end = offsets
    if not 0 <= begin <= end <= size:
        raise CheckpointError(f"{path}: tensor {key!r} lies outside the file "
                              f"(bytes {begin}..{end} of {size})")
    itemsize = 2 if dtype == "BF16" else (
        np.dtype(_SAFETENSORS_DTYPES[dtype]).itemsize if dtype in _SAFETENSORS_DTYPES else None)
    if itemsize is None:
        raise CheckpointError(f"{path}: tensor {key!r} has unsupported dtype {dtype!r}")
    count = 1
    for n in shape:
        count *= n
    if count * itemsize != end - begin:
        raise CheckpointError(f"{path}: tensor {key!r}: shape {tuple(shape)} {dtype} needs "
                              f"{count * itemsize:,} bytes, its data has {end - begin:,}")
    return dtype, shape, begin, end


def _read_torch(path):
    try:
        import torch
    except ImportError:
        # Without torch, its files are read as data (sisr.port.torchfile).
        from sisr.port.torchfile import TorchFileError, read

        try:
            return read(path)
        except TorchFileError as err:
            raise CheckpointError(str(err)) from None
    try:
        # weights_only: never run code from the file (pickles can execute anything).
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types (UnpicklingError, RuntimeError)
        # torch's message spans many lines and advises weights_only=False, which would run
        # code from the file: say in one line what was refused.
        if "weights_only" in str(err) or "Unsupported global" in str(err):
            reason = ("it holds Python objects that loading weights only does not allow "
                      "(sisr never runs code from a checkpoint)")
        else:
            lines = str(err).strip().splitlines()
            reason = lines[0] if lines else type(err).__name__
        raise CheckpointError(f"{path}: refused by torch.load(weights_only=True): {reason}") \
            from err


def _to_numpy(value):
    if isinstance(value, (np.ndarray, np.generic)):
        return np.asarray(value)
    if hasattr(value, "detach"):  # a torch tensor: widen half/bfloat16 for numpy
        tensor = value.detach().cpu()
        if tensor.is_floating_point():
            tensor = tensor.float()
        return tensor.numpy()
    return None


# Entries and key prefixes under which training checkpoints keep a discriminator.
DISCRIMINATOR_KEYS = ("params_d", "net_d", "netD", "discriminator", "model_d", "D")
GENERATOR_PREFIXES = ("net_g.", "netG.", "generator.")
DISCRIMINATOR_PREFIXES = ("net_d.", "netD.", "discriminator.")


class StateDict(dict):
    """A state_dict read from a file, remembering the wrapper entry it came from.

    `entry`: the top-level entry used (e.g. "params"), None for a bare state_dict;
    `entries`: every top-level entry that holds a mapping (the alternatives).
    """

    entry = None
    entries = ()


def _refuse_discriminator(obj, path):
    """Refuses a checkpoint holding both a generator and a discriminator, unless told which."""
    inner = [k for k in DISCRIMINATOR_KEYS if isinstance(obj.get(k), dict)]
    outer = [k for k in WRAPPER_KEYS if isinstance(obj.get(k), dict)]
    if inner and outer:
        raise CheckpointError(
            f"{path} holds both a generator ({', '.join(outer)}) and a discriminator "
            f"({', '.join(inner)}): pass the generator's entry as param_key (--param-key "
            f"{outer[0]}) to use it")
    keys = [str(k) for k in obj]
    for g_prefix in GENERATOR_PREFIXES:
        for d_prefix in DISCRIMINATOR_PREFIXES:
            if any(k.startswith(g_prefix) for k in keys) and \
                    any(k.startswith(d_prefix) for k in keys):
                raise CheckpointError(
                    f"{path} holds both a generator ({g_prefix}*) and a discriminator "
                    f"({d_prefix}*) in one state_dict: save the generator's weights alone")


def _unwrap(obj, path, param_key, prefer=(), quiet=False):
    """(the mapping that holds the tensors of a (possibly wrapped) checkpoint, the entry it
    came from or None)."""
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state_dict")
    if param_key is not None:
        if param_key not in obj:
            raise CheckpointError(f"{path} has no entry {param_key!r}; its top-level keys: "
                                  f"{', '.join(map(str, list(obj)[:10]))}")
        return _unwrap(obj[param_key], path, None)[0], param_key
    _refuse_discriminator(obj, path)
    if all(_to_numpy(v) is not None for v in obj.values()):
        return obj, None
    for key in (*prefer, *WRAPPER_KEYS):
        if isinstance(obj.get(key), dict):
            if key == "params" and isinstance(obj.get("params_ema"), dict) and not quiet:
                log.info("%s: using 'params' (pass param_key='params_ema' for the EMA weights)",
                         path)
            return _unwrap(obj[key], path, None)[0], key
    raise CheckpointError(
        f"{path} is not a state_dict: no tensors at the top level and none of the usual "
        f"entries ({', '.join(WRAPPER_KEYS)}); top-level keys: "
        f"{', '.join(map(str, list(obj)[:10]))}"
    )


def _as_state_dict(raw, path, param_key, prefer=(), quiet=False):
    mapping, entry = _unwrap(raw, path, param_key, prefer, quiet)
    state = StateDict(as_numpy(mapping, path))
    if not state:
        raise CheckpointError(f"{path} holds no tensors")
    state.entry = entry
    state.entries = tuple(k for k, v in raw.items() if isinstance(v, dict)) \
        if isinstance(raw, dict) else ()
    return state


def as_numpy(mapping, origin="state_dict"):
    """A flat dict of numpy arrays (floats as float32) from arrays or torch tensors,
    without `module.` / `model.` prefixes."""
    state = {}
    for key, value in mapping.items():
        array = _to_numpy(value)
        if array is None:
            raise CheckpointError(f"{origin}: entry {key!r} is a {type(value).__name__}, "
                                  "not a tensor")
        if np.issubdtype(array.dtype, np.floating):
            array = array.astype(np.float32, copy=False)
        state[str(key)] = array
    return strip_prefixes(state)


def strip_prefixes(state_dict):
    """Removes `module.` / `model.` when every key starts with it (repeatedly)."""
    changed = True
    while changed:
        changed = False
        for prefix in STRIPPED_PREFIXES:
            if state_dict and all(k.startswith(prefix) for k in state_dict):
                state_dict = {k[len(prefix):]: v for k, v in state_dict.items()}
                changed = True
    return state_dict
