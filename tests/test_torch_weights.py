"""The torch-free .pth reader, on files written here in both PyTorch formats."""

import collections
import io
import pickle
import struct
import sys
import types
import zipfile

import numpy as np
import pytest

from koala_lib.torch_weights import LEGACY_MAGIC, load_state_dict


@pytest.fixture
def fake_torch(monkeypatch):
    """Just enough of a `torch` module for pickle to write references to it."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called while writing")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2

    class FloatStorage:
        pass

    FloatStorage.__module__ = "torch"
    FloatStorage.__qualname__ = "FloatStorage"
    torch.FloatStorage = FloatStorage
    torch._utils = utils
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return torch


class _Tensor:
    def __init__(self, key, array, stride=None, offset=0):
        self.key, self.array, self.offset = key, array, offset
        self.stride = stride or tuple(s // array.itemsize for s in array.strides)


def _save(path, named, torch, use_zip):
    """named: {name: (_Tensor, shape)} -> a .pth file in the legacy or zip format."""

    class Writer(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, _Tensor) and getattr(obj, "_as_storage", False):
                return ("storage", torch.FloatStorage, obj.key, "cpu", obj.array.size)
            return None

    def rebuild_args(tensor, shape):
        storage = _Tensor(tensor.key, tensor.array)
        storage._as_storage = True
        return (storage, tensor.offset, shape, tensor.stride, False, collections.OrderedDict())

    class Rebuilt:
        def __init__(self, tensor, shape):
            self.tensor, self.shape = tensor, shape

        def __reduce__(self):
            return (torch._utils._rebuild_tensor_v2, rebuild_args(self.tensor, self.shape))

    state = collections.OrderedDict(
        (name, Rebuilt(tensor, shape)) for name, (tensor, shape) in named.items()
    )
    main = io.BytesIO()
    Writer(main, protocol=2).dump(state)
    storages = {tensor.key: tensor.array for tensor, _ in named.values()}
    if use_zip:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("archive/data.pkl", main.getvalue())
            for key, array in storages.items():
                archive.writestr(f"archive/data/{key}", array.astype("<f4").tobytes())
        return
    with open(path, "wb") as handle:
        for header in (LEGACY_MAGIC, 1001, {"little_endian": True}):
            pickle.dump(header, handle, protocol=2)
        handle.write(main.getvalue())
        pickle.dump(list(storages), handle, protocol=2)
        for array in storages.values():
            handle.write(struct.pack("<q", array.size))
            handle.write(array.astype("<f4").tobytes())


@pytest.mark.parametrize("use_zip", [False, True], ids=["legacy", "zip"])
def test_reads_tensors_with_offsets_and_strides(tmp_path, fake_torch, use_zip):
    flat = np.arange(12, dtype=np.float32)
    named = {
        "conv.weight": (_Tensor("0", flat, stride=(4, 1)), (3, 4)),
        # A transposed view: shape (4, 3) with strides (1, 4) on the same storage.
        "conv.weight_t": (_Tensor("0", flat, stride=(1, 4)), (4, 3)),
        "bias": (_Tensor("1", np.array([1.5, -2.0, 3.25], np.float32), offset=1,
                         stride=(1,)), (2,)),
    }
    path = tmp_path / ("w.pth" if not use_zip else "w.zip.pth")
    _save(path, named, fake_torch, use_zip)
    state = load_state_dict(path)
    np.testing.assert_array_equal(state["conv.weight"], flat.reshape(3, 4))
    np.testing.assert_array_equal(state["conv.weight_t"], flat.reshape(3, 4).T)
    np.testing.assert_array_equal(state["bias"], [-2.0, 3.25])
    assert state["conv.weight_t"].flags["C_CONTIGUOUS"]


def test_refuses_code_in_a_weights_file(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as handle:
        for header in (LEGACY_MAGIC, 1001, {}):
            pickle.dump(header, handle, protocol=2)
        # A pickle that would call os.system("true") if loaded naively.
        handle.write(b"cos\nsystem\n(S'true'\ntR.")
    with pytest.raises(ValueError, match="os.system is not allowed"):
        load_state_dict(path)


def test_clear_errors_for_missing_and_non_torch_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no weights file"):
        load_state_dict(tmp_path / "missing.pth")
    (tmp_path / "text.pth").write_text("hello")
    with pytest.raises(ValueError):
        load_state_dict(tmp_path / "text.pth")
    with zipfile.ZipFile(tmp_path / "plain.zip", "w") as archive:
        archive.writestr("readme.txt", "not weights")
    with pytest.raises(ValueError, match="without data.pkl"):
        load_state_dict(tmp_path / "plain.zip")
