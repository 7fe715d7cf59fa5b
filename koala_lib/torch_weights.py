"""Read a PyTorch ``state_dict`` file (``.pth``) into NumPy arrays, without PyTorch.

The offline ImageNet MobileNetV2 weights come as torchvision's ``.pth`` file. Reading it
with ``torch.load`` would make PyTorch (a multi-gigabyte CUDA build on most machines) a
dependency of a one-time conversion, so this module reads the file format directly:

* the legacy format (PyTorch < 1.6; torchvision's 2018 files): five pickles in a row
  (magic number, protocol version, system info, the state dict, the storage keys), then
  each storage's raw little-endian bytes preceded by its element count;
* the zip format (PyTorch >= 1.6): ``<name>/data.pkl`` plus one file per storage.

Nothing in the file is trusted. A crafted or damaged file gives one ``ValueError`` that
names it, never code run, memory read past a buffer or a crash:

* every pickle is read with a restricted unpickler. The legacy header pickles and the
  storage-key list may name no class at all (they hold only numbers, strings, lists and
  dicts); the state dict only the handful it needs (``OrderedDict``, tensor rebuilding,
  storage types). So no file can run code: safer than ``torch.load(weights_only=False)``;
* the magic number, each storage reference and the storage keys are checked for type
  and value;
* every size is checked against the bytes present: each storage holds exactly the
  element count it declares (a file cut short is an error, not a short array), and each
  tensor's offset, sizes and strides stay inside its storage.

Checked against ``torch.load`` on the MobileNetV2 file.
"""

from __future__ import annotations

import collections
import io
import math
import pickle
import reprlib
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}



class _StorageType:
    """What a storage class name (``torch.FloatStorage``...) unpickles to: the dtype it
    names, and nothing that can be called (NumPy's scalar types can: called on a nested list
    that repeats itself, they would build an array of exponential size)."""

    def __init__(self, name: str, dtype):
        self.name, self.dtype = name, np.dtype(dtype)

    def __repr__(self) -> str:
        return f"torch.{self.name}"


_STORAGE_TYPES = {name: _StorageType(name, dtype) for name, dtype in _STORAGE_DTYPES.items()}

# What a malformed file makes pickle, zipfile, struct or NumPy raise (zipfile raises
# RuntimeError for an encrypted member): each becomes one ValueError naming the file.
_DAMAGED = (
    pickle.UnpicklingError, zipfile.BadZipFile, zlib.error, EOFError, struct.error,
    KeyError, IndexError, TypeError, ValueError, AttributeError, OverflowError,
    NotImplementedError, RuntimeError, MemoryError, RecursionError,
)


def _is_count(value) -> bool:
    """A whole number >= 0, as sizes, strides, offsets and element counts must be."""
    return type(value) is int and value >= 0  # not bool, float or text


class _Storage:
    def __init__(self, dtype, key: str, numel: int):
        self.dtype, self.key, self.numel = np.dtype(dtype), key, numel
        self.data: np.ndarray | None = None

    def check_bytes(self, nbytes: int) -> None:
        expected = self.numel * self.dtype.itemsize
        if nbytes != expected:
            raise ValueError(
                f"storage {self.key!r} has {nbytes} bytes, not the {expected} of the "
                f"{self.numel} {self.dtype} values it declares"
            )

    def fill(self, raw: bytes) -> None:
        self.check_bytes(len(raw))
        self.data = np.frombuffer(raw, dtype=self.dtype.newbyteorder("<"))


class _LazyTensor:
    """A tensor whose storage bytes are read after the pickle (legacy format)."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def _checked_layout(self, name: str) -> tuple[np.ndarray, int, tuple, tuple]:
        if not isinstance(self.storage, _Storage):
            raise ValueError(f"parameter {name!r} does not refer to a storage")
        data = self.storage.data
        if data is None:
            raise ValueError(f"storage {self.storage.key!r} of parameter {name!r} has no data")
        if not _is_count(self.offset):
            raise ValueError(f"parameter {name!r}: offset {self.offset!r} is not a count >= 0")
        size, stride = self.size, self.stride
        if not isinstance(size, tuple | list) or not all(map(_is_count, size)):
            raise ValueError(f"parameter {name!r}: sizes {size!r} are not counts >= 0")
        if not isinstance(stride, tuple | list) or not all(map(_is_count, stride)) or (
            len(stride) != len(size)
        ):
            raise ValueError(
                f"parameter {name!r}: strides {stride!r} are not one count >= 0 for each of "
                f"the sizes {tuple(size)}"
            )
        return data, self.offset, tuple(size), tuple(stride)

    def materialize(self, name: str) -> np.ndarray:
        data, offset, size, stride = self._checked_layout(name)
        if 0 in size:
            return np.zeros(size, data.dtype)  # empty: reads nothing, wherever it points
        # Every element read lies between offset and this one, as no stride is negative.
        last = offset + sum((n - 1) * step for n, step in zip(size, stride, strict=True))
        key = self.storage.key
        if last >= len(data):
            raise ValueError(
                f"parameter {name!r}: sizes {size} with strides {stride} from offset "
                f"{offset} reach element {last} of storage {key!r}, which holds {len(data)}"
            )
        if math.prod(size) > len(data):
            # Only a view overlapping itself (stride 0) has more elements than its storage:
            # refused, so that a tiny file cannot ask for unbounded memory.
            raise ValueError(
                f"parameter {name!r}: its {math.prod(size)} elements are more than storage "
                f"{key!r} holds ({len(data)}); overlapping views are not supported"
            )
        if not size:
            return data[offset].copy()
        strides = tuple(step * data.itemsize for step in stride)
        view = np.lib.stride_tricks.as_strided(data[offset:], shape=size, strides=strides)
        return np.array(view, order="C")  # a C-contiguous copy, whatever the strides


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    return _LazyTensor(storage, storage_offset, size, stride)


class _PlainUnpickler(pickle.Unpickler):
    """For the pickles that hold only numbers, strings, lists and dicts: no class at all."""

    def __init__(self, file, what: str):
        super().__init__(file)
        self.what = what

    def find_class(self, module, name):
        raise pickle.UnpicklingError(
            f"{module}.{name} is not allowed in {self.what} (only numbers, strings, lists "
            "and dicts are)"
        )


class _StateDictUnpickler(pickle.Unpickler):
    def __init__(self, file, storages: dict[str, _Storage]):
        super().__init__(file)
        self.storages = storages

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_TYPES:
            return _STORAGE_TYPES[name]  # not callable: a file cannot make it build arrays
        raise pickle.UnpicklingError(
            f"{module}.{name} is not allowed in a weights file (only tensors and dicts are)"
        )

    def persistent_load(self, saved_id):
        bad = f"bad storage reference {reprlib.repr(saved_id)}"
        if not isinstance(saved_id, tuple) or len(saved_id) < 5 or saved_id[0] != "storage":
            raise pickle.UnpicklingError(f"{bad}: not ('storage', type, key, location, count)")
        _kind, dtype, key, _location, numel, *_view = saved_id
        # Identity, not ==: a NumPy dtype equals the text that names it.
        if not any(dtype is known for known in _STORAGE_TYPES.values()):
            raise pickle.UnpicklingError(f"{bad}: {dtype!r} is not a storage type")
        dtype = dtype.dtype
        if not _is_count(numel):
            raise pickle.UnpicklingError(f"{bad}: its element count is not a count >= 0")
        key = str(key)
        storage = self.storages.setdefault(key, _Storage(dtype, key, numel))
        if (storage.dtype, storage.numel) != (np.dtype(dtype), numel):
            raise pickle.UnpicklingError(f"{bad}: storage {key!r} was declared otherwise")
        return storage


def _materialize(state) -> dict[str, np.ndarray]:
    if not isinstance(state, dict):
        raise ValueError(f"expected a state dict, found {type(state).__name__}")
    return {
        str(name): value.materialize(str(name))
        for name, value in state.items()
        if isinstance(value, _LazyTensor)
    }


def _check_keys(keys, storages: dict[str, _Storage]) -> None:
    """The legacy storage keys: a list naming each storage of the state dict once."""
    if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
        raise ValueError(f"the storage keys {reprlib.repr(keys)} are not a list of strings")
    if sorted(keys) != sorted(storages):
        raise ValueError(
            f"the storage keys {reprlib.repr(keys)} do not name each of the state dict's "
            f"storages {reprlib.repr(sorted(storages))} once"
        )


def _read_exactly(handle, size: int, what: str) -> bytes:
    raw = handle.read(size)
    if len(raw) != size:
        raise ValueError(f"the file ends inside {what} ({len(raw)} of {size} bytes)")
    return raw


def _read_legacy_storage(handle, storage: _Storage) -> None:
    what = f"storage {storage.key!r}"
    (count,) = struct.unpack("<q", _read_exactly(handle, 8, f"the element count of {what}"))
    if count != storage.numel:
        raise ValueError(f"{what} declares {storage.numel} elements but the file gives {count}")
    storage.fill(_read_exactly(handle, count * storage.dtype.itemsize, what))


def _load_legacy(handle) -> dict[str, np.ndarray]:
    magic = _PlainUnpickler(handle, "the magic number").load()
    if type(magic) is not int or magic != LEGACY_MAGIC:
        raise ValueError("wrong magic number")
    _PlainUnpickler(handle, "the protocol version").load()
    _PlainUnpickler(handle, "the system info").load()  # endianness, type sizes
    storages: dict[str, _Storage] = {}
    state = _StateDictUnpickler(handle, storages).load()
    keys = _PlainUnpickler(handle, "the storage keys").load()
    _check_keys(keys, storages)
    for key in keys:
        _read_legacy_storage(handle, storages[key])
    return _materialize(state)


def _read_zip_storage(archive: zipfile.ZipFile, name: str, storage: _Storage) -> None:
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise ValueError(f"storage {storage.key!r} is missing from the zip (no {name})") from None
    storage.check_bytes(info.file_size)  # the size the zip claims, before reading it
    storage.fill(_read_member(archive, info))


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """A member's bytes. PyTorch stores members uncompressed; a compressed one could expand
    a small file into gigabytes, so it is refused before it is read."""
    if info.compress_type != zipfile.ZIP_STORED:
        raise ValueError(f"{info.filename} is compressed, which PyTorch never writes")
    return archive.read(info)


def _load_zip(path: Path) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(path) as archive:
        pickles = [name for name in archive.namelist() if name.endswith("/data.pkl")]
        if not pickles:
            raise ValueError("a zip file without data.pkl")
        prefix = pickles[0][: -len("data.pkl")]
        storages: dict[str, _Storage] = {}
        pickled = _read_member(archive, archive.getinfo(pickles[0]))
        state = _StateDictUnpickler(io.BytesIO(pickled), storages).load()
        for key, storage in storages.items():
            _read_zip_storage(archive, f"{prefix}data/{key}", storage)
    return _materialize(state)


def load_state_dict(path) -> dict[str, np.ndarray]:
    """``{parameter name: array}`` from a ``.pth`` state dict, legacy or zip format."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    try:
        if zipfile.is_zipfile(path):
            return _load_zip(path)
        # Read whole (a weights file is megabytes): a length the file claims then costs at
        # most the file's size, never an allocation of whatever it claims.
        return _load_legacy(io.BytesIO(path.read_bytes()))
    except _DAMAGED as error:
        # from None: the message says what is wrong with the file; a traceback into pickle
        # or NumPy would not help (the cause stays on error.__context__ for debugging).
        raise ValueError(
            f"cannot read {path} as PyTorch weights: {error}; the file is damaged or is not "
            "a PyTorch weights file"
        ) from None
