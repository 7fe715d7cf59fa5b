"""The colorization network of the report (Fig. 3 and 4; Deep Koalarization, arXiv 1712.03400).

Inputs are the scaled lightness ``L`` (H x W x 1, see :mod:`koala_lib.color`) and the
embedding of a frozen image classifier (D values, see :mod:`koala_lib.features`); the
output is the scaled ``a,b`` (H x W x 2, tanh). H and W must be divisible by 8.

=========  =========================================  ==================
part       layers (3x3 convolutions unless noted)     output
=========  =========================================  ==================
encoder    64 /2, 128, 128 /2, 256, 256 /2, 512,      H/8 x W/8 x 256
           512, 256
fusion     embedding standardised, tiled H/8 x W/8,   H/8 x W/8 x 256
           concatenated, then 256 1x1
decoder    128, up, 64, 64, up, 32, 2 (tanh), up      H x W x 2
=========  =========================================  ==================

ReLU everywhere but the last layer. Only ``keras.ops`` is used, so the model runs on the
TensorFlow, JAX and PyTorch backends alike.

**Two heads** (``build_colorizer(head=...)``). ``"regression"`` is the report's: a,b
directly, trained with MSE. ``"classification"`` (Zhang et al. 2016, :mod:`koala_lib.quantize`)
keeps the encoder, the fusion and the decoder's first three convolutions (up to H/4 x W/4 x
64) and replaces the rest by a 1x1 convolution to Q = 261 logits, one per colour bin, at
H/4 x W/4: the paper's 56 x 56 for 224 x 224 images. At full size the logits would take
224 x 224 x 261 x 4 bytes = 52 MB per image in float32 (and as much again for their
gradient); at H/4 they take 3.3 MB. :func:`predict_scaled_ab` reads a,b out of either head
(the annealed mean, upsampled bilinearly to H x W for the classification head).

One addition to the report's table, with no parameters: the fusion layer standardises each
image's embedding (zero mean, unit variance over its D logits) before tiling it. Raw
ImageNet logits reach +-10 on 1000 inputs against 256 encoder features in the 1x1
convolution, and start the tanh output close to saturation. Notebook 05 measures it,
over-fitting one portrait from several seeds with the report's plain Adam, clipped Adam
and a lower learning rate (``experiments.overfit_runs``): standardising is no cure on its own
(runs of plain Adam can still spike), clipping or lr 1e-4 is what keeps every run out of
saturation there. ``standardize_embedding=False`` gives the report's exact layer.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import keras
import numpy as np
from keras import layers, ops

from koala_lib import quantize
from koala_lib.color import AB_SCALE

# (filters, stride) of the encoder's eight 3x3 convolutions, from the report's table.
ENCODER_SPEC = ((64, 2), (128, 1), (128, 2), (256, 1), (256, 2), (512, 1), (512, 1), (256, 1))
FUSION_FILTERS = 256
# Decoder: an int is a 3x3 ReLU convolution with that many filters, "up" doubles H and W.
DECODER_SPEC = (128, "up", 64, 64, "up", 32)
DOWNSAMPLING = 8
HEADS = ("regression", "classification")
# The classification head: the decoder's layers before its second upsampling, then logits.
CLASSIFICATION_DECODER = (128, "up", 64, 64)
CLASSIFICATION_FACTOR = 4  # its logits are at H/4 x W/4

__all__ = [
    "DOWNSAMPLING",
    "HEADS",
    "FusionLayer",
    "build_colorizer",
    "build_decoder",
    "build_encoder",
    "check_image_size",
    "colorizer_head",
    "fusion_by_broadcast",
    "load_colorizer",
    "predict_scaled_ab",
]


def check_image_size(image_size) -> tuple[int | None, int | None]:
    """``224`` or ``(H, W)`` (or None for any size) -> (H, W), each divisible by 8."""
    if image_size is None:
        return None, None
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    height, width = (None if side is None else int(side) for side in image_size)
    for name, side in (("height", height), ("width", width)):
        if side is not None and (side <= 0 or side % DOWNSAMPLING):
            raise ValueError(
                f"image {name} {side} is not a positive multiple of {DOWNSAMPLING}: the encoder "
                f"halves it three times and the decoder doubles it back. Resize or crop to "
                f"{max(DOWNSAMPLING, side // DOWNSAMPLING * DOWNSAMPLING)} first."
            )
    return height, width


def build_encoder(image_size=224, name: str = "encoder") -> keras.Model:
    """Scaled L (H x W x 1) -> features (H/8 x W/8 x 256)."""
    height, width = check_image_size(image_size)
    lightness = keras.Input((height, width, 1), name="L")
    x = lightness
    for index, (filters, stride) in enumerate(ENCODER_SPEC, start=1):
        x = layers.Conv2D(filters, 3, strides=stride, padding="same", activation="relu",
                          name=f"encoder_conv{index}")(x)
    return keras.Model(lightness, x, name=name)


@keras.saving.register_keras_serializable(package="koala")
class FusionLayer(layers.Layer):
    """Tile the embedding over the encoder's grid, concatenate on depth, then a 1x1 conv.

    For features of shape (B, h, w, C) and an embedding (B, D), the fused volume is
    (B, h, w, C + D) and the output (B, h, w, filters). Written with ``keras.ops`` only,
    and with dynamic h, w, so one layer serves any image size.
    """

    def __init__(self, filters: int = FUSION_FILTERS, standardize_embedding: bool = True,
                 **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.standardize_embedding = standardize_embedding
        self.conv = layers.Conv2D(filters, 1, activation="relu", name="fusion_conv")

    def build(self, input_shape):
        features_shape, embedding_shape = input_shape
        fused = (*features_shape[:-1], features_shape[-1] + embedding_shape[-1])
        self.conv.build(fused)

    def prepare_embedding(self, embedding):
        """Standardise each embedding over its D values (no parameters); see the module doc."""
        embedding = ops.cast(embedding, "float32")
        if not self.standardize_embedding:
            return embedding
        mean = ops.mean(embedding, axis=-1, keepdims=True)
        std = ops.std(embedding, axis=-1, keepdims=True)
        return (embedding - mean) / (std + 1e-6)

    def tile(self, features, embedding):
        """The fusion volume before the 1x1 convolution: (B, h, w, C + D)."""
        embedding = self.prepare_embedding(embedding)
        shape = ops.shape(features)
        tiled = ops.broadcast_to(
            ops.expand_dims(ops.expand_dims(embedding, 1), 1),
            (shape[0], shape[1], shape[2], ops.shape(embedding)[-1]),
        )
        return ops.concatenate([features, ops.cast(tiled, features.dtype)], axis=-1)

    def call(self, inputs):
        features, embedding = inputs
        return self.conv(self.tile(features, embedding))

    def compute_output_shape(self, input_shape):
        features_shape, _ = input_shape
        return (*features_shape[:-1], self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "standardize_embedding": self.standardize_embedding}


def fusion_by_broadcast(fusion: FusionLayer, features, embedding):
    """The same result as ``fusion([features, embedding])``, without building the tiled volume.

    Split the 1x1 kernel W, of shape (C + D, F), into W_f (C, F) for the features and W_e
    (D, F) for the embedding. Since every grid cell holds the same embedding,
    ``concat(f, e) @ W = f @ W_f + e @ W_e``: a 1x1 convolution of the features plus one
    dense product per image, broadcast over the grid. It saves the (h, w, C + D) volume
    and (h*w - 1) copies of the embedding's product.
    """
    kernel, bias = fusion.conv.kernel, fusion.conv.bias
    channels = ops.shape(features)[-1]
    kernel = ops.reshape(kernel, (ops.shape(kernel)[-2], ops.shape(kernel)[-1]))
    from_features = ops.einsum("bhwc,cf->bhwf", features, kernel[:channels])
    from_embedding = ops.matmul(fusion.prepare_embedding(embedding), kernel[channels:])
    return ops.relu(from_features + from_embedding[:, None, None, :] + bias)


def build_decoder(image_size=224, name: str = "decoder", head: str = "regression",
                  bins: int | None = None) -> keras.Model:
    """Fused features (H/8 x W/8 x 256) -> scaled a,b (H x W x 2) in (-1, 1), or with
    ``head="classification"`` -> logits over ``bins`` colour bins (H/4 x W/4 x Q)."""
    height, width = check_image_size(image_size)
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}: use one of {HEADS}.")
    grid = (None if height is None else height // DOWNSAMPLING,
            None if width is None else width // DOWNSAMPLING)
    fused = keras.Input((*grid, FUSION_FILTERS), name="fused")
    x = fused
    convs = ups = 0
    for step in DECODER_SPEC if head == "regression" else CLASSIFICATION_DECODER:
        if step == "up":
            ups += 1
            x = layers.UpSampling2D(2, name=f"decoder_up{ups}")(x)
        else:
            convs += 1
            x = layers.Conv2D(step, 3, padding="same", activation="relu",
                              name=f"decoder_conv{convs}")(x)
    if head == "classification":
        if bins is None:
            from koala_lib.quantize import in_gamut_bins

            bins = len(in_gamut_bins())
        # Logits stay float32 under mixed precision: a softmax over 261 bins needs it.
        x = layers.Conv2D(bins, 1, dtype="float32", name="decoder_logits")(x)
        return keras.Model(fused, x, name=name)
    # The output layer stays float32 under mixed precision: tanh saturates early in float16.
    x = layers.Conv2D(2, 3, padding="same", activation="tanh", dtype="float32",
                      name="decoder_ab")(x)
    x = layers.UpSampling2D(2, name=f"decoder_up{ups + 1}", dtype="float32")(x)
    return keras.Model(fused, x, name=name)


def build_colorizer(image_size=224, embedding_dim: int = 1000, name: str = "colorizer",
                    standardize_embedding: bool = True, head: str = "regression",
                    bins: int | None = None) -> keras.Model:
    """The full network: (scaled L, embedding) -> scaled a,b, or logits over colour bins
    with ``head="classification"`` (see the module doc).

    ``embedding_dim`` is 1000 for the Keras ImageNet classifiers (1001 for the TF-slim
    Inception-ResNet-v2 of the paper, whose extra class is "background").
    """
    height, width = check_image_size(image_size)
    if embedding_dim <= 0:
        raise ValueError(f"embedding_dim must be positive, got {embedding_dim}.")
    lightness = keras.Input((height, width, 1), name="L")
    embedding = keras.Input((embedding_dim,), name="embedding")
    features = build_encoder((height, width))(lightness)
    fused = FusionLayer(FUSION_FILTERS, standardize_embedding, name="fusion")(
        [features, embedding])
    output = build_decoder((height, width), head=head, bins=bins)(fused)
    return keras.Model([lightness, embedding], output, name=name)


def colorizer_head(model: keras.Model) -> str:
    """``"regression"`` for a model whose output is a,b (2 channels), else
    ``"classification"`` (one logit per colour bin)."""
    return "regression" if model.outputs[0].shape[-1] == 2 else "classification"


def predict_scaled_ab(model: keras.Model, lightness, embedding, temperature: float | None = None):
    """Scaled a,b (N, H, W, 2) as a numpy array from either head, for scaled L (N, H, W, 1).

    The classification head's logits are read out by the annealed mean at ``temperature``
    (default :data:`koala_lib.quantize.TEMPERATURE`; 0 is the mode, 1 the mean) and resized
    bilinearly to H x W."""
    output = model([lightness, embedding], training=False)
    if colorizer_head(model) == "regression":
        return np.asarray(ops.convert_to_numpy(output), np.float32)
    temperature = quantize.TEMPERATURE if temperature is None else temperature
    ab = quantize.annealed_mean(output, temperature=temperature) / AB_SCALE
    shape = ops.shape(lightness)
    ab = ops.image.resize(ab, (shape[1], shape[2]), interpolation="bilinear")
    return np.asarray(ops.convert_to_numpy(ab), np.float32)


# What a .keras archive may expand to before Keras reads it: its config is a few tens of KB,
# its weights about 4 bytes a parameter (26 MB for the course's 6.6 million, 80 MB for a
# checkpoint with Adam's moments), and float weights barely compress.
MAX_CONFIG_BYTES = 16 * 2**20
MAX_ARCHIVE_BYTES = 2 * 2**30
MAX_EXPANSION = 100  # uncompressed / compressed, for members over a megabyte


def _check_archive(path: Path) -> None:
    """Refuse a .keras archive whose members are larger, or expand more, than a colorizer's
    could: Keras would read its config whole (a 25 MB file can hold a 2 GB config)."""
    damaged = ("it may be damaged or incompletely copied. Copy it again, or retrain it with "
               "notebook 06.")
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise ValueError(f"{path} is not a Keras model file ({error}): {damaged}") from error
    total = sum(member.file_size for member in members)
    for member in members:
        config = not member.filename.endswith(".h5")
        if (config and member.file_size > MAX_CONFIG_BYTES) or total > MAX_ARCHIVE_BYTES or (
                member.file_size > 2**20
                and member.file_size > MAX_EXPANSION * max(member.compress_size, 1)):
            raise ValueError(
                f"{path} is not a koala colorizer: its member {member.filename} expands to "
                f"{member.file_size:,} bytes from {member.compress_size:,} (a colorizer's "
                f"config is under {MAX_CONFIG_BYTES // 2**20} MB, its whole archive under "
                f"{MAX_ARCHIVE_BYTES // 2**30} GB); it was not read. Use a model saved by "
                "notebook 06.")


def load_colorizer(path) -> keras.Model:
    """Load a colorizer saved with ``model.save("name.keras")``, in Keras' safe mode.

    A damaged or foreign file is a ValueError naming it (Keras says "File not found" for a
    truncated one)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not a Keras model file (a .keras file is a zip archive): "
                         "it may be damaged or incompletely copied. Copy it again, or "
                         "retrain it with notebook 06.")
    _check_archive(path)
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as error:  # Keras raises many types for damaged archives
        raise ValueError(f"cannot load {path} as a colorizer ({type(error).__name__}: "
                         f"{str(error)[:300]}): it may be damaged or from another program. "
                         "Copy it again, or retrain it with notebook 06.") from error
