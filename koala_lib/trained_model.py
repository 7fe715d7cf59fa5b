"""A trained colorizer and its description: the one home of the model file's format.

A trained model is a ``.keras`` file with a ``.json`` beside it. :class:`Description` is
what the ``.json`` says, read and checked in one place (:meth:`Description.from_json`):

* ``extractor``: the classifier whose embeddings the model was trained on (name, weights and
  a fingerprint of their values): :func:`load_trained` refuses any other;
* ``image_size``: the square size it was trained at (what colorizing resizes to);
* ``head``: "regression" or "classification", taken from the model itself when it is saved
  and checked against it when it is loaded;
* ``temperature``: the classification head's read-out (default
  :data:`koala_lib.quantize.TEMPERATURE`);
* ``train_mean_ab``: the training images' mean a,b (the mean-colour baseline), if recorded;
* ``training``: everything else the trainer recorded (data, epochs, held-out metrics...).

:class:`TrainedColorizer` holds the model with its description; both are frozen. A change
(another temperature, from the command line) is a new object:
:meth:`TrainedColorizer.with_temperature`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import keras

from koala_lib import files
from koala_lib.data.images import MAX_IMAGE_SIZE
from koala_lib.model import DOWNSAMPLING, HEADS, build_colorizer, colorizer_head, load_colorizer
from koala_lib.quantize import TEMPERATURE, check_temperature

FORMAT = "koala colorizer 1"
MAX_DESCRIPTION_BYTES = 4 * 2**20  # a model's .json is a few KB
FIX = ("save models with koala_lib.trained_model.save_trained (notebook 06 does), or restore "
       "the .json that came with this model")
_FIELDS = ("extractor", "image_size", "head", "temperature", "embedding_dim", "train_mean_ab")
_RECORDED = ("format", "keras", "backend")  # written for the reader, not read back

__all__ = ["Description", "TrainedColorizer", "load_trained", "save_trained"]


@dataclass(frozen=True)
class Description:
    """What a saved colorizer's ``.json`` says, checked."""

    extractor: MappingProxyType  # name, weights, fingerprint
    image_size: int
    head: str = "regression"  # files older than the classification head have none
    temperature: float = TEMPERATURE
    embedding_dim: int | None = None
    train_mean_ab: tuple[float, float] | None = None
    training: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def from_json(cls, value, where) -> Description:
        """Every field checked, before any data work: each problem names ``where`` (the
        file), the field and the fix."""
        wanted = value.get("extractor") if isinstance(value, dict) else None
        if not isinstance(wanted, dict):
            raise ValueError(f"{where} is not a koala model description (it needs an "
                             "\"extractor\" with name, weights and fingerprint, and "
                             f"\"image_size\"): {FIX}.")
        missing = [key for key in ("name", "weights", "fingerprint")
                   if not isinstance(wanted.get(key), str)]
        if missing:
            raise ValueError(f"{where} describes no extractor {', '.join(missing)}: {FIX}.")
        head = value.get("head", "regression")
        if head not in HEADS:
            raise ValueError(f"{where} names the head {head!r}; koala's are "
                             f"{', '.join(HEADS)}: {FIX}.")
        try:
            temperature = check_temperature(value.get("temperature", TEMPERATURE), str(where))
        except ValueError as error:
            raise ValueError(f"{error} {FIX}.") from None
        size = value.get("image_size")
        if not _is_whole(size) or not 0 < size <= MAX_IMAGE_SIZE or size % DOWNSAMPLING:
            raise ValueError(f"{where}: image_size must be a multiple of {DOWNSAMPLING} from "
                             f"{DOWNSAMPLING} to {MAX_IMAGE_SIZE}, found {size!r}: {FIX}.")
        dim = value.get("embedding_dim")
        if dim is not None and (not _is_whole(dim) or dim <= 0):
            raise ValueError(f"{where}: embedding_dim must be a positive whole number, found "
                             f"{dim!r}: {FIX}.")
        mean = value.get("train_mean_ab")
        if mean is not None and not (isinstance(mean, list | tuple) and len(mean) == 2 and all(
                _is_finite(number) and abs(number) <= 1 for number in mean)):
            raise ValueError(f"{where}: train_mean_ab must be two finite numbers (the "
                             f"training images' mean a,b, scaled to [-1, 1]), found {mean!r}: "
                             f"{FIX}.")
        training = {key: item for key, item in value.items()
                    if key not in _FIELDS + _RECORDED}
        return cls(MappingProxyType(dict(wanted)), size, head, temperature, dim,
                   None if mean is None else (float(mean[0]), float(mean[1])),
                   MappingProxyType(training))

    def to_json(self) -> dict[str, Any]:
        """The ``.json``'s content (a new dict: changing it changes nothing here)."""
        value = {"head": self.head, "image_size": self.image_size,
                 "embedding_dim": self.embedding_dim, "extractor": dict(self.extractor),
                 "temperature": self.temperature,
                 "train_mean_ab": None if self.train_mean_ab is None
                 else list(self.train_mean_ab), **self.training}
        return {key: item for key, item in value.items() if item is not None}


def _is_whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite(value) -> bool:
    """A finite int or float (JSON's NaN and Infinity, and booleans, are not)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(
        value)


@dataclass(frozen=True)
class TrainedColorizer:
    model: keras.Model  # accepts any H, W divisible by 8
    description: Description
    path: Path | None = None

    @property
    def image_size(self) -> int:
        return self.description.image_size

    @property
    def head(self) -> str:
        """"regression" (a,b) or "classification" (colour bins)."""
        return self.description.head

    @property
    def temperature(self) -> float:
        """The classification head's read-out temperature: the one saved with the model,
        else the paper's (:data:`koala_lib.quantize.TEMPERATURE`)."""
        return self.description.temperature

    @property
    def metadata(self) -> dict[str, Any]:
        """The description as its ``.json`` holds it (a copy)."""
        return self.description.to_json()

    def with_temperature(self, temperature, where: str = "temperature") -> TrainedColorizer:
        """This colorizer read out at ``temperature``: a classification head only."""
        temperature = check_temperature(temperature, where)
        if self.head != "classification":
            raise ValueError(f"{where} {temperature:g}: {self.path or 'this model'} is a "
                             "regression model, which predicts a,b directly; only a "
                             "classification model has a read-out temperature.")
        return dataclasses.replace(self, description=dataclasses.replace(
            self.description, temperature=temperature))

    def describe(self) -> str:
        """One line: the head (and its temperature), the embeddings, the size."""
        head = (f"classification head, read out at T = {self.temperature:g}"
                if self.head == "classification" else "regression head")
        return (f"{head}; {self.description.extractor['name']} embeddings, trained at "
                f"{self.image_size}x{self.image_size}")


def save_trained(model: keras.Model, path, extractor, image_size: int, **training) -> Path:
    """Save ``model`` (rebuilt to accept any size) as ``path`` (.keras) and ``path``.json.

    ``extractor`` is the FeatureExtractor whose embeddings the model was trained on (or
    its description: a dict with name, weights and fingerprint, as
    :attr:`koala_lib.data.PortraitData.extractor`). ``temperature`` and ``train_mean_ab``
    among the keyword arguments are the description's fields; the others (data, metrics,
    ...) are its ``training`` record, as they are. The head is the model's own.
    """
    if not isinstance(extractor, dict):
        extractor = extractor.description
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"save the model as a .keras file, not {path.name}.")
    fusion = model.get_layer("fusion")
    head = colorizer_head(model)
    any_size = build_colorizer(None, int(model.inputs[1].shape[-1]),
                               standardize_embedding=fusion.standardize_embedding, head=head,
                               bins=None if head == "regression" else model.outputs[0].shape[-1])
    any_size.set_weights(model.get_weights())
    value = {"format": FORMAT, "head": head, "image_size": int(image_size),
             "embedding_dim": int(model.inputs[1].shape[-1]),
             "extractor": {key: extractor[key] for key in ("name", "weights", "fingerprint")},
             "keras": keras.__version__, "backend": keras.backend.backend(), **training}
    text = json.dumps(files.json_ready(value), indent=1)
    Description.from_json(json.loads(text), path.with_suffix(".json"))  # what loading reads
    # Both written whole before either is renamed: a full disk keeps the earlier pair.
    files.write_replacing_all({path: any_size.save, path.with_suffix(".json"): text})
    return path


def _read_description(path: Path) -> Description:
    """The ``.json`` at ``path``, read (at most :data:`MAX_DESCRIPTION_BYTES`) and checked."""
    try:
        value = json.loads(files.read_small(path, MAX_DESCRIPTION_BYTES,
                                            "koala model description").decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ValueError(f"{path} is not a koala model description: it cannot be "
                         f"read as JSON ({error}); {FIX}.") from error
    return Description.from_json(value, path)


def _described_extractor(wanted, info_path: Path):
    """The extractor the description names, refused before anything is built or downloaded
    when the name or weights are not ones koala makes."""
    from koala_lib.features import EXTRACTORS, load_extractor

    name, weights = wanted["name"], wanted["weights"]
    allowed = {"random", "imagenet", "torchvision"}
    # A weights file of your own (FeatureExtractor(name, path)) is named by its path; its
    # fingerprint is checked in load_trained like any other.
    if name not in EXTRACTORS or (weights not in allowed and not Path(weights).is_file()):
        raise ValueError(f"{info_path} names extractor {name!r} with {weights!r} weights; "
                         f"koala knows {sorted(EXTRACTORS)} with {sorted(allowed)} weights. "
                         "Restore the model's own .json, or pass the extractor yourself.")
    # Random weights are seeded (features.RANDOM_WEIGHTS_SEED): rebuilt here, they match on
    # the same backend; the fingerprint check in load_trained refuses them where they do not.
    try:
        return load_extractor(name, None if weights == "random" else weights, verbose=False)
    except (ValueError, OSError, ConnectionError) as error:
        kind = ConnectionError if isinstance(error, ConnectionError) else ValueError
        raise kind(f"the extractor {info_path} names ({name}, {weights} weights) could not "
                   f"be loaded: {error}") from error


def load_trained(path, extractor=None) -> tuple[TrainedColorizer, object]:
    """(the trained colorizer, its extractor); the extractor is loaded from the description
    when not given, and refused when it is not the one the model was trained with."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no trained model at {path}: train one with notebook 06 "
                                "(it saves build/models/colorizer_<profile>.keras), or pass "
                                "the path of one.")
    info_path = path.with_suffix(".json")
    if not info_path.is_file():
        raise ValueError(f"{path} has no {info_path.name} beside it: without it the "
                         "extractor the model was trained with is unknown. Save models "
                         "with koala_lib.trained_model.save_trained.")
    description = _read_description(info_path)
    wanted = description.extractor
    model = load_colorizer(path)  # before the extractor: a damaged file is found in seconds
    if extractor is None:
        extractor = _described_extractor(wanted, info_path)
    if extractor.name != wanted["name"] or extractor.fingerprint != wanted["fingerprint"]:
        same_name = extractor.name == wanted["name"]
        raise ValueError(
            f"{path.name} was trained on embeddings of {wanted['name']} ({wanted['weights']} "
            f"weights, fingerprint {wanted['fingerprint'][:12]}), but the extractor offered "
            + (f"has other weights: {extractor.weights_name}, fingerprint "
               f"{extractor.fingerprint[:12]}" if same_name else
               f"is {extractor.name} ({extractor.weights_name} weights)")
            + ". Its colours would be meaningless: use the model's own extractor, or train "
              "a model for this one.")
    _check_inputs(model, path, extractor)
    if colorizer_head(model) != description.head:
        raise ValueError(f"{path.name} holds a {colorizer_head(model)} model but "
                         f"{info_path.name} says {description.head}: the two files do not "
                         "belong together. Save models with save_trained.")
    return TrainedColorizer(model, description, path), extractor


def _check_inputs(model: keras.Model, path: Path, extractor) -> None:
    """A colorizer takes (L, embedding): anything else fails later, deep inside Keras."""
    shapes = [tuple(tensor.shape) for tensor in model.inputs]
    expected = [(None, None, None, 1), (None, int(extractor.embedding_dim))]
    if len(shapes) != 2 or shapes[0][-1:] != (1,) or shapes[1] != expected[1]:
        raise ValueError(f"{path} takes inputs of shapes {shapes}, not a colorizer's (L, "
                         f"embedding) {expected}: use a model saved by notebook 06.")
