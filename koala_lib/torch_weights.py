"""Read a PyTorch ``state_dict`` file (``.pth``) into NumPy arrays, without PyTorch.

The offline ImageNet MobileNetV2 weights come as torchvision's ``.pth`` file. Reading it
with ``torch.load`` would make PyTorch (a multi-gigabyte CUDA build on most machines) a
dependency of a one-time conversion, so this module reads the file format directly:

* the legacy format (PyTorch < 1.6; torchvision's 2018 files): five pickles in a row
  (magic number, protocol version, system info, the state dict, the storage keys), then
  each storage's raw little-endian bytes preceded by its element count;
* the zip format (PyTorch >= 1.6): ``<name>/data.pkl`` plus one file per storage.

Unpickling is restricted to the handful of names a state dict needs (``OrderedDict``,
tensor rebuilding, storage types), so a crafted file cannot run code: safer than
``torch.load(weights_only=False)``. Checked against ``torch.load`` on the MobileNetV2 file.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
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


class _Storage:
    def __init__(self, dtype, key: str, numel: int):
        self.dtype, self.key, self.numel = np.dtype(dtype), key, numel
        self.data: np.ndarray | None = None


class _LazyTensor:
    """A tensor whose storage bytes are read after the pickle (legacy format)."""

    def __init__(self, storage: _Storage, offset: int, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), stride

    def materialize(self) -> np.ndarray:
        data = self.storage.data
        if data is None:
            raise ValueError(f"storage {self.storage.key} has no data in the file")
        if not self.size:
            return data[self.offset].copy()
        itemsize = data.itemsize
        strides = tuple(step * itemsize for step in self.stride)
        view = np.lib.stride_tricks.as_strided(
            data[self.offset :], shape=self.size, strides=strides
        )
        return np.array(view, order="C")  # a C-contiguous copy, whatever the strides


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    return _LazyTensor(storage, storage_offset, size, stride)


class _StateDictUnpickler(pickle.Unpickler):
    def __init__(self, file, storages: dict[str, _Storage]):
        super().__init__(file)
        self.storages = storages

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        raise pickle.UnpicklingError(
            f"{module}.{name} is not allowed in a weights file (only tensors and dicts are)"
        )

    def persistent_load(self, saved_id):
        kind, dtype, key, _location, numel, *_view = saved_id
        if kind != "storage":
            raise pickle.UnpicklingError(f"unsupported persistent object {kind!r}")
        key = str(key)
        if key not in self.storages:
            self.storages[key] = _Storage(dtype, key, int(numel))
        return self.storages[key]


def _materialize(state) -> dict[str, np.ndarray]:
    if not isinstance(state, dict):
        raise ValueError(f"expected a state dict, found {type(state).__name__}")
    return {
        name: value.materialize()
        for name, value in state.items()
        if isinstance(value, _LazyTensor)
    }


def _load_legacy(handle) -> dict[str, np.ndarray]:
    magic = pickle.load(handle)
    if magic != LEGACY_MAGIC:
        raise ValueError("not a PyTorch file (wrong magic number)")
    pickle.load(handle)  # protocol version
    pickle.load(handle)  # system info (endianness, type sizes)
    storages: dict[str, _Storage] = {}
    state = _StateDictUnpickler(handle, storages).load()
    keys = pickle.load(handle)
    for key in keys:
        storage = storages[str(key)]
        (count,) = struct.unpack("<q", handle.read(8))
        raw = handle.read(count * storage.dtype.itemsize)
        storage.data = np.frombuffer(raw, dtype=storage.dtype.newbyteorder("<"))
    return _materialize(state)


def _load_zip(path: Path) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(path) as archive:
        pickles = [name for name in archive.namelist() if name.endswith("/data.pkl")]
        if not pickles:
            raise ValueError(f"{path} is a zip file without data.pkl: not a PyTorch file")
        prefix = pickles[0][: -len("data.pkl")]
        storages: dict[str, _Storage] = {}
        state = _StateDictUnpickler(io.BytesIO(archive.read(pickles[0])), storages).load()
        for key, storage in storages.items():
            raw = archive.read(f"{prefix}data/{key}")
            storage.data = np.frombuffer(raw, dtype=storage.dtype.newbyteorder("<"))
    return _materialize(state)


def load_state_dict(path) -> dict[str, np.ndarray]:
    """``{parameter name: array}`` from a ``.pth`` state dict, legacy or zip format."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    if zipfile.is_zipfile(path):
        return _load_zip(path)
    with path.open("rb") as handle:
        try:
            return _load_legacy(handle)
        except (pickle.UnpicklingError, EOFError, struct.error) as error:
            raise ValueError(f"cannot read {path} as PyTorch weights: {error}") from error
