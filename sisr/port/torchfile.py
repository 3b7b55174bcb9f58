"""Reading PyTorch `.pt` / `.pth` files without torch, as data.

`torch.save` writes a pickle whose tensors refer to raw storages: in a zip archive
(`<name>/data.pkl` and `<name>/data/<key>`, torch >= 1.6) or, in the legacy format that
BasicSR publishes its files in, as pickles followed by the storages' bytes. The pickle is
read by an unpickler that knows only the names a state_dict needs (ordered dicts, tensor
and parameter rebuilding, typed storages); any other name is refused, so no code from the
file ever runs. Tensors come back as NumPy arrays (half and bfloat16 widened to float32).
"""

import collections
import pickle
import struct
import zipfile

import numpy as np

from sisr.errors import SisrError

# pickle.dumps(0x1950a86a20f9469cfc6c, protocol=2): the first pickle of the legacy format.
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_STORAGES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": "bfloat16", "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class TorchFileError(SisrError, ValueError):
    """A `.pt` / `.pth` file that is not a plain PyTorch checkpoint of tensors."""


class _Storage:
    def __init__(self, dtype, key, count):
        self.dtype, self.key, self.count = dtype, key, count
        self.array = None

    def load(self, data):
        if self.dtype == "bfloat16":  # the upper half of a float32
            bits = np.frombuffer(data, "<u2", self.count).astype(np.uint32) << 16
            self.array = bits.view(np.float32)
        else:
            array = np.frombuffer(data, np.dtype(self.dtype).newbyteorder("<"), self.count)
            self.array = array.astype(np.float32) if self.dtype == np.float16 else array


class _Tensor:
    """A tensor whose storage may be read after the pickle (the legacy format)."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset = storage, int(offset)
        self.size, self.stride = tuple(size), tuple(stride)

    def array(self, origin):
        data = self.storage.array
        if data is None:
            raise TorchFileError(f"{origin}: storage {self.storage.key!r} has no data")
        count = int(np.prod(self.size)) if self.size else 1
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride)) \
            if count else self.offset
        if self.offset < 0 or (count and last >= data.size) or min(self.stride, default=0) < 0:
            raise TorchFileError(f"{origin}: a tensor of shape {self.size} lies outside its "
                                 f"storage ({data.size} values)")
        itemsize = data.itemsize
        view = np.lib.stride_tricks.as_strided(
            data[self.offset:], shape=self.size,
            strides=tuple(s * itemsize for s in self.stride), writeable=False)
        return np.array(view)


def _rebuild_tensor(storage, storage_offset, size, stride, *args):
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError("a tensor without a storage")
    return _Tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=None, backward_hooks=None, *args):
    return data


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, storages, origin):
        super().__init__(file)
        self.storages, self.origin = storages, origin

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _STORAGES:
            return name
        raise pickle.UnpicklingError(f"it holds the Python object {module}.{name}, which "
                                     "reading weights as data does not allow")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r:.60}")
        kind, key, count = pid[1], str(pid[2]), int(pid[4])
        if kind not in _STORAGES:
            raise pickle.UnpicklingError(f"unknown storage type {kind!r}")
        if key not in self.storages:
            self.storages[key] = _Storage(_STORAGES[kind], key, count)
        return self.storages[key]


def _resolve(obj, origin):
    if isinstance(obj, _Tensor):
        return obj.array(origin)
    if isinstance(obj, dict):
        return type(obj)((k, _resolve(v, origin)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_resolve(v, origin) for v in obj)
    return obj


def _read_zip(path):
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("data.pkl")]
        if len(pickles) != 1:
            raise TorchFileError(f"{path}: expected one data.pkl in the archive, found "
                                 f"{len(pickles)}")
        prefix = pickles[0][:-len("data.pkl")]
        if archive.read(prefix + "byteorder").decode() != "little" \
                if prefix + "byteorder" in names else False:
            raise TorchFileError(f"{path}: big-endian checkpoints are not supported")
        storages = {}
        with archive.open(pickles[0]) as f:
            obj = _Unpickler(f, storages, path).load()
        for key, storage in storages.items():
            member = f"{prefix}data/{key}"
            if member not in names:
                raise TorchFileError(f"{path}: storage {key!r} is missing from the archive")
            data = archive.read(member)
            if len(data) < storage.count * np.dtype(
                    "<u2" if storage.dtype == "bfloat16" else storage.dtype).itemsize:
                raise TorchFileError(f"{path}: storage {key!r} holds {len(data)} bytes, "
                                     f"fewer than its {storage.count} values")
            storage.load(data)
    return _resolve(obj, path)


def _read_legacy(path):
    storages = {}
    with open(path, "rb") as f:
        if pickle.load(f) != LEGACY_MAGIC:  # plain ints: safe to unpickle
            raise TorchFileError(f"{path}: not a PyTorch checkpoint (wrong magic number)")
        _Unpickler(f, {}, path).load()  # protocol version
        _Unpickler(f, {}, path).load()  # sys_info: a dict of plain values
        obj = _Unpickler(f, storages, path).load()
        keys = _Unpickler(f, {}, path).load()
        if not isinstance(keys, list):
            raise TorchFileError(f"{path}: the storage list is missing")
        for key in keys:
            storage = storages.get(str(key))
            if storage is None:
                raise TorchFileError(f"{path}: unknown storage {key!r}")
            (count,) = struct.unpack("<q", f.read(8))
            itemsize = 2 if storage.dtype == "bfloat16" else np.dtype(storage.dtype).itemsize
            data = f.read(count * itemsize)
            if count < storage.count or len(data) != count * itemsize:
                raise TorchFileError(f"{path}: storage {key!r} is cut short")
            storage.count = count
            storage.load(data)
    return _resolve(obj, path)


def read(path):
    """The object a `.pt` / `.pth` file holds (dicts of NumPy arrays), read without torch.

    Raises `TorchFileError` for a file that holds other Python objects, or is damaged.
    """
    try:
        if zipfile.is_zipfile(path):
            return _read_zip(path)
        return _read_legacy(path)
    except TorchFileError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError,
            AttributeError, struct.error, zipfile.BadZipFile, UnicodeDecodeError) as err:
        raise TorchFileError(f"{path}: cannot read it as PyTorch weights without torch: "
                             f"{err}") from None
