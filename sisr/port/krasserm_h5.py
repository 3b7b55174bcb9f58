"""Guarded access to a krasserm `.h5` file: links, attributes and datasets are checked
before anything is read.

An HDF5 file can declare a dataset far larger than itself (compressed fill values), point
into other files (external links, external storage, virtual datasets) or put a group, a
string or a compound type where a weight belongs. So every object is reached through hard
links only, every weight must be a float dataset stored in this file, and its declared
shape is recorded (`StoredArray`) and checked by the layout walk and against the sisr
layer it fills before `read` reads it. The weights a file declares are bounded in total
(`MAX_PARAMETERS`, several times the largest krasserm or EDSR-paper model).
"""

import numpy as np

from sisr.port.io import CheckpointError

# 2**28 weights (1 GiB as float32): ~6x EDSR's largest model (43M), ~14x the SRGAN
# discriminator at its 96-pixel input; a file that declares more is refused unread.
MAX_PARAMETERS = 2 ** 28
# a chunk is decompressed whole: one may exceed its dataset by this much at most
CHUNK_SLACK = 2 ** 20
# the JSON model_config (~100 KB for the largest EDSR) and each list of names
MAX_CONFIG_BYTES = 8 * 2 ** 20
MAX_ATTRIBUTE_BYTES = 16 * 2 ** 20
MAX_NAMES = 100_000
FLOAT_SIZES = (2, 4, 8)


def gib(nbytes):
    return f"{nbytes / 2 ** 30:.3g} GiB"


class StoredArray:
    """A checked float dataset, not read yet: where it is and what it declares."""

    def __init__(self, where, h5path, shape, dtype, flag=False):
        self.where = where          # "weight 'conv2d_1/kernel:0' of layer 'conv2d_1'"
        self.h5path = h5path        # its path in the file (hard links only)
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)
        self.flag = flag

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def size(self):
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self):
        return self.size * self.dtype.itemsize

    def __repr__(self):
        return f"StoredArray({self.h5path!r}, {self.shape}, {self.dtype})"


def _link_kind(link_type):
    import h5py

    return {h5py.h5l.TYPE_SOFT: "soft link", h5py.h5l.TYPE_EXTERNAL: "external link"}.get(
        link_type, "user-defined link")


def child(group, name, path, what):
    """`group[name]`, reached through hard links only (one component at a time); None if
    there is no such link. `what` names the object in errors."""
    import h5py

    parts = name.split("/")
    if not name or any(p in ("", ".") for p in parts):
        raise CheckpointError(f"{path}: {what}: {name!r} is not a relative HDF5 path")
    obj = group
    for part in parts:
        if not isinstance(obj, h5py.Group):
            return None
        key = part.encode("utf8")
        if not obj.id.links.exists(key):
            return None
        link_type = obj.id.links.get_info(key).type
        if link_type != h5py.h5l.TYPE_HARD:
            raise CheckpointError(f"{path}: {what} is a {_link_kind(link_type)}, refused: only "
                                  "objects stored in the file itself are read")
        obj = obj[part]
    return obj


def group_at(group, name, path, what):
    """`child` that must be a group."""
    import h5py

    obj = child(group, name, path, what)
    if obj is not None and not isinstance(obj, h5py.Group):
        raise CheckpointError(f"{path}: {what} is a dataset, not a group")
    return obj


def array_at(group, name, path, what, flag=False):
    """A `StoredArray` of the dataset `group[name]`, checked, not read; None if missing.

    Weights must be float16/32/64 arrays stored in the file; a `flag` (tfa's
    `initialized`) may also be a boolean or integer scalar.
    """
    import h5py

    obj = child(group, name, path, what)
    if obj is None:
        return None
    if not isinstance(obj, h5py.Dataset):
        raise CheckpointError(f"{path}: {what} is a group, not a dataset")
    if obj.is_virtual:
        raise CheckpointError(f"{path}: {what} is a virtual dataset, refused: only data "
                              "stored in the file itself is read")
    if obj.external:
        raise CheckpointError(f"{path}: {what} has external storage, refused: only data "
                              "stored in the file itself is read")
    dtype, shape = obj.dtype, obj.shape
    ok = dtype.names is None and dtype.subdtype is None and (
        (dtype.kind == "f" and dtype.itemsize in FLOAT_SIZES)
        or (flag and dtype.kind in "biu" and dtype.itemsize <= 8))
    if not ok:
        want = "a float16/32/64" if not flag else "a float, integer or boolean"
        kind = _dtype_name(dtype)
        raise CheckpointError(f"{path}: {what} is {'an' if kind[0] in 'aeiou' else 'a'} "
                              f"{kind} dataset, not {want} array")
    if shape is None:
        raise CheckpointError(f"{path}: {what} is an empty (null) dataset")
    if len(shape) > 4 or (flag and int(np.prod(shape)) != 1):
        raise CheckpointError(f"{path}: {what} has shape {tuple(shape)}, not that of a "
                              + ("flag" if flag else "Keras layer weight"))
    array = StoredArray(what, obj.name, shape, dtype, flag)
    if array.size > MAX_PARAMETERS:
        raise CheckpointError(f"{path}: {what} declares shape {array.shape} "
                              f"({gib(array.nbytes)}), more than {MAX_PARAMETERS:,} weights: "
                              "no krasserm model is that large")
    if obj.chunks is not None:
        # a read decompresses every chunk it touches, padding included
        covered = np.prod([-(-n // c) * c for n, c in zip(shape, obj.chunks)], dtype=np.int64)
        if int(covered) * dtype.itemsize > 2 * array.nbytes + CHUNK_SLACK:
            raise CheckpointError(f"{path}: {what} of shape {array.shape} is stored in chunks "
                                  f"of {tuple(obj.chunks)}, far larger than its data")
    return array


def _dtype_name(dtype):
    import h5py

    if h5py.check_string_dtype(dtype) is not None or dtype.kind in "SU":
        return "string"
    if dtype.names is not None:
        return "compound"
    if dtype.subdtype is not None:
        return "array-typed"
    return {"f": f"float{dtype.itemsize * 8}", "i": "integer", "u": "integer",
            "b": "boolean", "c": "complex", "O": "object", "V": "opaque"}.get(dtype.kind,
                                                                                str(dtype))


def check_total(arrays, path):
    """Refuses a file whose weights together exceed `MAX_PARAMETERS`."""
    total = sum(a.size for a in arrays)
    if total > MAX_PARAMETERS:
        largest = max(arrays, key=lambda a: a.size)
        raise CheckpointError(
            f"{path}: the file declares {total:,} weights "
            f"({gib(sum(a.nbytes for a in arrays))}; the largest, {largest.where}, "
            f"{largest.shape}), more than {MAX_PARAMETERS:,}: no krasserm model is that large")


def read(file, array, path):
    """The values of a checked `StoredArray` of the open h5py `file`, in the stored type;
    the dataset is reached and checked again before it is read."""
    fresh = array_at(file, array.h5path.lstrip("/"), path, array.where, array.flag)
    if fresh is None or (fresh.shape, fresh.dtype) != (array.shape, array.dtype):
        raise CheckpointError(f"{path}: {array.where} changed while the file was read")
    dataset = file[fresh.h5path]
    if not array.ndim:
        return np.asarray(dataset[()], dtype=array.dtype)
    out = np.empty(array.shape, dtype=array.dtype)
    if array.size:
        dataset.read_direct(out)
    return out


def string_list(attrs, key, path, what):
    """The names in a string-array attribute (`layer_names`, `weight_names`), checked
    before they are read; None if the attribute is absent."""
    import h5py

    if key not in attrs:
        return None
    attr = attrs.get_id(key)
    shape, dtype = attr.shape, attr.dtype
    if shape is not None and len(shape) == 1 and shape[0] == 0:
        return []  # Keras writes an empty float array for a layer without weights
    if h5py.check_string_dtype(dtype) is None or shape is None or len(shape) > 1:
        raise CheckpointError(f"{path}: {what}: attribute {key!r} is not a list of strings")
    count = int(np.prod(shape)) if shape else 1
    if count > MAX_NAMES or attr.get_storage_size() > MAX_ATTRIBUTE_BYTES:
        raise CheckpointError(f"{path}: {what}: attribute {key!r} lists {count:,} names, "
                              f"more than {MAX_NAMES:,}")
    values = attrs[key]
    values = [values] if np.ndim(values) == 0 else list(values)
    return [decode(v, path, f"{what}: attribute {key!r}") for v in values]


def string_attribute(attrs, key, path):
    """A scalar string attribute (the JSON `model_config`), bounded; None if absent."""
    import h5py

    if key not in attrs:
        return None
    attr = attrs.get_id(key)
    if h5py.check_string_dtype(attr.dtype) is None or attr.shape not in ((), (1,)):
        raise CheckpointError(f"{path}: attribute {key!r} is not a string")
    too_large = CheckpointError(f"{path}: attribute {key!r} is larger than "
                                f"{MAX_CONFIG_BYTES // 2 ** 20} MiB")
    if attr.get_storage_size() > MAX_CONFIG_BYTES:
        raise too_large
    value = attrs[key]
    if np.ndim(value):
        value = value[0]
    text = decode(value, path, f"attribute {key!r}")
    if len(text) > MAX_CONFIG_BYTES:
        raise too_large
    return text


def decode(value, path, what):
    if isinstance(value, bytes):
        try:
            return value.decode("utf8")
        except UnicodeDecodeError:
            raise CheckpointError(f"{path}: {what} is not UTF-8 text") from None
    if isinstance(value, str):
        return value
    raise CheckpointError(f"{path}: {what} holds a {type(value).__name__}, not a string")
