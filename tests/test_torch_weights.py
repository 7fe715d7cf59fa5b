"""The torch-free .pth reader, on files written here in both PyTorch formats."""

import collections
import io
import os
import pickle
import re
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
        if stride is None:
            stride = tuple(s // array.itemsize for s in array.strides)
        self.stride = stride


def _save(path, named, torch, use_zip, keys=None, storage_id=None):
    """named: {name: (_Tensor, shape)} -> a .pth file in the legacy or zip format.

    keys replaces the legacy storage-key list and storage_id(tensor) the storage reference,
    to write damaged or crafted files."""

    def reference(tensor):
        return ("storage", torch.FloatStorage, tensor.key, "cpu", tensor.array.size)

    class Writer(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, _Tensor) and getattr(obj, "_as_storage", False):
                return (storage_id or reference)(obj)
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
        pickle.dump(list(storages) if keys is None else keys, handle, protocol=2)
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


class _Payload:
    """Creates `marker` when unpickled naively: the proof that a file ran code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def _four_floats(tmp_path, torch, use_zip, shape=(4,), name="w.pth", **layout):
    """A file with one parameter "fc.weight" of `shape` over a 4-float storage "0"."""
    path = tmp_path / name
    layout.setdefault("stride", (1,) * len(shape))
    tensor = _Tensor("0", np.arange(4, dtype=np.float32), **layout)
    _save(path, {"fc.weight": (tensor, shape)}, torch, use_zip)
    return path


def _refused(path, *details):
    """pytest.raises for the reader's error: the file, each detail, and what to conclude."""
    pattern = "(?s)" + "".join(f"(?=.*{re.escape(str(text))})" for text in (path, *details))
    return pytest.raises(ValueError, match=pattern + ".*damaged or is not a PyTorch weights file")


@pytest.mark.parametrize("position", [0, 1, 2], ids=["magic", "protocol", "system-info"])
def test_a_crafted_legacy_header_pickle_runs_no_code(tmp_path, position):
    marker = tmp_path / "code-ran"
    headers = [LEGACY_MAGIC, 1001, {"little_endian": True}]
    headers[position] = _Payload(marker)
    path = tmp_path / "crafted.pth"
    with open(path, "wb") as handle:
        for header in headers:
            pickle.dump(header, handle, protocol=2)
    with _refused(path, "mkdir is not allowed"):
        load_state_dict(path)
    assert not marker.exists()


def test_a_crafted_legacy_keys_pickle_runs_no_code(tmp_path, fake_torch):
    marker = tmp_path / "code-ran"
    path = tmp_path / "crafted.pth"
    tensor = _Tensor("0", np.arange(4, dtype=np.float32))
    _save(path, {"fc.weight": (tensor, (4,))}, fake_torch, use_zip=False,
          keys=_Payload(marker))
    with _refused(path, "mkdir is not allowed"):
        load_state_dict(path)
    assert not marker.exists()


@pytest.mark.parametrize("keys", [["0", "9"], "0", [0], ("0",), ["0", "0"]],
                         ids=["unknown-key", "a-string", "an-int", "a-tuple", "a-repeat"])
def test_legacy_storage_keys_must_be_a_list_of_the_storages_names(tmp_path, fake_torch, keys):
    path = tmp_path / "w.pth"
    tensor = _Tensor("0", np.arange(4, dtype=np.float32))
    _save(path, {"fc.weight": (tensor, (4,))}, fake_torch, use_zip=False, keys=keys)
    with _refused(path, "storage keys"):
        load_state_dict(path)


def test_a_legacy_file_with_a_wrong_magic_number_is_refused(tmp_path):
    path = tmp_path / "w.pth"
    with open(path, "wb") as handle:
        for header in (float(LEGACY_MAGIC), 1001, {"little_endian": True}):
            pickle.dump(header, handle, protocol=2)
    with _refused(path, "wrong magic number"):
        load_state_dict(path)


@pytest.mark.parametrize("use_zip", [False, True], ids=["legacy", "zip"])
@pytest.mark.parametrize("shape", [(4096,), (200_000_000,), (2, 3)],
                         ids=["4096", "200000000", "2x3"])
def test_a_tensor_reaching_past_its_storage_is_refused(tmp_path, fake_torch, use_zip, shape):
    # (4096,) read 4,092 floats past the buffer; (200000000,) crashed the interpreter.
    path = _four_floats(tmp_path, fake_torch, use_zip, shape=shape,
                        stride=(3, 1) if len(shape) == 2 else (1,))
    with _refused(path, "'fc.weight'", "storage '0'"):
        load_state_dict(path)


@pytest.mark.parametrize("use_zip", [False, True], ids=["legacy", "zip"])
@pytest.mark.parametrize(
    ("shape", "layout", "detail"),
    [
        ((4,), {"stride": (-1,), "offset": 3}, "stride"),
        ((2,), {"stride": (1,), "offset": -1}, "offset"),
        ((-1,), {"stride": (1,)}, "size"),
        ((2.5,), {"stride": (1,)}, "size"),
        ((2, 2), {"stride": (1,)}, "stride"),
        ((8,), {"stride": (0,)}, "elements"),
        ((), {"stride": (), "offset": 4}, "offset"),
    ],
    ids=["negative-stride", "negative-offset", "negative-size", "float-size",
         "strides-for-another-rank", "more-elements-than-the-storage", "scalar-past-the-end"],
)
def test_a_malformed_tensor_layout_is_refused(tmp_path, fake_torch, use_zip, shape, layout,
                                              detail):
    path = _four_floats(tmp_path, fake_torch, use_zip, shape=shape, **layout)
    with _refused(path, "'fc.weight'", detail):
        load_state_dict(path)


@pytest.mark.parametrize("use_zip", [False, True], ids=["legacy", "zip"])
def test_empty_tensors_and_scalars_inside_the_storage_still_load(tmp_path, fake_torch,
                                                                 use_zip):
    path = tmp_path / "w.pth"
    flat = np.arange(4, dtype=np.float32)
    _save(path, {"empty": (_Tensor("0", flat, stride=(1, 1), offset=9), (0, 5)),
                 "scalar": (_Tensor("0", flat, stride=(), offset=3), ())},
          fake_torch, use_zip)
    state = load_state_dict(path)
    assert state["empty"].shape == (0, 5) and state["scalar"] == 3.0


def test_a_legacy_file_cut_short_anywhere_is_refused(tmp_path, fake_torch):
    whole = _four_floats(tmp_path, fake_torch, use_zip=False).read_bytes()
    for length in range(len(whole)):
        path = tmp_path / f"cut-at-{length}.pth"
        path.write_bytes(whole[:length])
        with _refused(path):
            load_state_dict(path)


@pytest.mark.parametrize("count", [3, 5, 2**40, -1])
def test_a_legacy_storage_must_hold_its_declared_element_count(tmp_path, fake_torch, count):
    path = _four_floats(tmp_path, fake_torch, use_zip=False, shape=(2,))
    floats = np.arange(4, dtype="<f4").tobytes()
    stored = struct.pack("<q", 4) + floats
    whole = path.read_bytes()
    assert whole.endswith(stored)
    # A count that disagrees with the declared 4 elements, then as many floats as it says
    # where the file can hold them.
    kept = floats[: 4 * count] if 0 <= count < 4 else floats
    path.write_bytes(whole[: -len(stored)] + struct.pack("<q", count) + kept)
    with _refused(path, "storage '0'", "declares 4"):
        load_state_dict(path)


def _rewrite_zip(path, members):
    """Rewrite the zip at path with members: {name: bytes, or None to leave it out}."""
    with zipfile.ZipFile(path) as archive:
        kept = {name: archive.read(name) for name in archive.namelist()}
    kept.update(members)
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in kept.items():
            if content is not None:
                archive.writestr(name, content)


def test_a_zip_without_a_storage_file_is_refused(tmp_path, fake_torch):
    path = _four_floats(tmp_path, fake_torch, use_zip=True)
    _rewrite_zip(path, {"archive/data/0": None})
    with _refused(path, "storage '0'", "missing"):
        load_state_dict(path)


@pytest.mark.parametrize("length", [15, 8, 20, 0])
def test_a_zip_storage_must_hold_its_declared_bytes(tmp_path, fake_torch, length):
    path = _four_floats(tmp_path, fake_torch, use_zip=True, shape=(0,))
    _rewrite_zip(path, {"archive/data/0": bytes(length)})
    with _refused(path, "storage '0'", length):
        load_state_dict(path)


@pytest.mark.parametrize("use_zip", [False, True], ids=["legacy", "zip"])
@pytest.mark.parametrize(
    "storage_id",
    [
        lambda torch, tensor: ("storage",),
        lambda torch, tensor: ("storage", torch.FloatStorage, "0", "cpu", "four"),
        lambda torch, tensor: ("storage", torch.FloatStorage, "0", "cpu", -4),
        lambda torch, tensor: ("storage", "float32", "0", "cpu", 4),
        lambda torch, tensor: ("module", torch.FloatStorage, "0", "cpu", 4),
        lambda torch, tensor: "storage",
    ],
    ids=["too-short", "text-count", "negative-count", "dtype-as-text", "not-a-storage",
         "not-a-tuple"],
)
def test_a_malformed_storage_reference_is_refused(tmp_path, fake_torch, use_zip, storage_id):
    path = tmp_path / "w.pth"
    tensor = _Tensor("0", np.arange(4, dtype=np.float32))
    _save(path, {"fc.weight": (tensor, (4,))}, fake_torch, use_zip,
          storage_id=lambda obj: storage_id(fake_torch, obj))
    with _refused(path, "storage"):
        load_state_dict(path)


def test_a_file_that_is_not_a_zip_nor_a_pickle_is_refused(tmp_path):
    path = tmp_path / "w.pth"
    path.write_bytes(b"PK\x03\x04 a truncated zip header")
    with _refused(path):
        load_state_dict(path)


def test_a_zip_with_a_compressed_member_is_refused_before_it_is_expanded(tmp_path,
                                                                          fake_torch):
    path = _four_floats(tmp_path, fake_torch, use_zip=True)
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members["archive/data.pkl"] += bytes(4 * 10**6)  # after the pickle: would expand 100x
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    assert path.stat().st_size < 50_000
    with _refused(path, "archive/data.pkl is compressed, which PyTorch never writes"):
        load_state_dict(path)


def test_a_storage_type_cannot_be_called_to_build_arrays(tmp_path, fake_torch):
    # A nested list that repeats itself: 20 levels are 2**20 numbers from a few hundred
    # bytes of pickle; NumPy's scalar types, called on it, would build them all.
    nested = [0.0]
    for _ in range(20):
        nested = [nested, nested]

    class Expanding:
        def __reduce__(self):
            return (fake_torch.FloatStorage, (nested,))

    path = tmp_path / "expanding.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"w": Expanding()}, protocol=2))
    assert path.stat().st_size < 2_000
    with _refused(path, "not callable"):
        load_state_dict(path)
