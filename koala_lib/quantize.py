"""Colour as classes: the a,b plane cut into bins, after Zhang, Isola and Efros (ECCV 2016,
"Colorful Image Colorization", arXiv 1603.08511, section 2.1).

A regression head trained with MSE predicts the *mean* of the colours a gray pixel could
have: a red, green or blue shirt averages to gray-brown, the report's "grayish" and
"brownish". A classification head predicts a *distribution* over colour bins instead, and
the colour is read out of it afterwards. The pieces, each a function here:

* **Bins**: a,b on a grid of ``GRID`` = 10, keeping the bins whose 10 x 10 cell holds some
  8-bit sRGB colour (:func:`in_gamut_bins`). Zhang et al. state 313 for their gamut; all
  16.7 million 8-bit sRGB colours reach **261** cells (:func:`compute_in_gamut_bins`, about 15 s;
  the result is stored in ``ab_bins.csv`` and a test recomputes it). The paper does not say
  how its gamut was computed; its 313 include cells that no sRGB colour reaches.
* **Soft targets**: each true a,b is spread over its ``NEIGHBOURS`` = 5 nearest bins with
  Gaussian weights (sigma ``SOFT_SIGMA`` = 5), summing to 1 (:func:`soft_encode`).
* **Class rebalancing**: rare colours are weighted up. The training pixels' bin
  distribution, smoothed (sigma ``PRIOR_SIGMA`` = 5), is mixed with the uniform one
  (``PRIOR_MIX`` lambda = 0.5), inverted and normalised so that its expected value under
  the smoothed distribution is 1 (:func:`rebalancing_weights`).
* **Read-out**: the annealed mean, the mean of the distribution sharpened by a temperature
  T (``TEMPERATURE`` = 0.38): T = 1 is the plain mean (a blend of every plausible colour,
  which can drift towards gray), T -> 0 the mode (vivid but patchy) (:func:`annealed_mean`).

Bins are in Lab units (a, b in about [-110, 100]); the network's scaled a,b are these / 128
(:data:`koala_lib.color.AB_SCALE`). :func:`annealed_mean` uses ``keras.ops`` only, so it runs
inside a model on any backend as well as on numpy arrays.
"""

from __future__ import annotations

import functools
from importlib import resources

import numpy as np

from koala_lib import color

GRID = 10  # the bin size in a,b units
NEIGHBOURS = 5  # soft targets: this many nearest bins
SOFT_SIGMA = 5.0  # their Gaussian weights
PRIOR_SIGMA = 5.0  # the smoothing of the training colours' distribution
PRIOR_MIX = 0.5  # lambda: the weight of the uniform distribution in the mix
TEMPERATURE = 0.38  # the paper's annealed-mean temperature
MAX_TEMPERATURE = 10.0  # beyond 1 the read-out only grows grayer; 10 leaves room to look
BINS_FILE = "ab_bins.csv"  # written by compute_in_gamut_bins (scripts/ab_bins.py)

__all__ = [
    "GRID",
    "NEIGHBOURS",
    "PRIOR_MIX",
    "PRIOR_SIGMA",
    "SOFT_SIGMA",
    "TEMPERATURE",
    "annealed_mean",
    "check_temperature",
    "bin_counts",
    "compute_in_gamut_bins",
    "in_gamut_bins",
    "nearest_bin",
    "rebalancing_weights",
    "smoothed_prior",
    "soft_encode",
]


def check_temperature(value, where: str = "temperature") -> float:
    """``value`` as a read-out temperature (a finite number from 0 to
    :data:`MAX_TEMPERATURE`); a ValueError that names ``where`` (an option, a file) else."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not 0 <= value <= MAX_TEMPERATURE:  # NaN fails the range too
        raise ValueError(f"{where}: the temperature must be a number from 0 to "
                         f"{MAX_TEMPERATURE:g}, found {value!r}.")
    return float(value)


def _cells(ab: np.ndarray, grid: int) -> np.ndarray:
    """The integer grid cell (i, j) of each a,b: the nearest multiple of ``grid``."""
    return np.floor(np.asarray(ab, np.float64) / grid + 0.5).astype(np.int64)


def compute_in_gamut_bins(grid: int = GRID, levels: int = 256) -> np.ndarray:
    """The bin centres (Q, 2) in Lab a,b units: the multiples of ``grid`` whose cell holds
    the a,b of some sRGB colour with ``levels`` values per channel (256: every 8-bit
    colour), sorted by a, then b. One red level at a time, so memory stays small."""
    values = np.arange(levels) / (levels - 1)
    green, blue = (axis.ravel() for axis in np.meshgrid(values, values, indexing="ij"))
    cells = set()
    for red in values:
        rgb = np.stack([np.full_like(green, red), green, blue], axis=-1)[:, None, :]
        ab = color.rgb_to_lab(rgb)[:, 0, 1:]
        cells.update(map(tuple, np.unique(_cells(ab, grid), axis=0).tolist()))
    return np.array(sorted(cells), np.float32) * grid


@functools.cache
def _stored_bins() -> np.ndarray:
    text = resources.files("koala_lib").joinpath(BINS_FILE).read_text()
    return np.loadtxt(text.splitlines(), delimiter=",", skiprows=1, dtype=np.float32)


def in_gamut_bins(grid: int = GRID) -> np.ndarray:
    """The Q = 261 bin centres (Q, 2) of :func:`compute_in_gamut_bins` for the 10-grid
    (stored in ``ab_bins.csv``), or computed now for another ``grid``."""
    if grid == GRID:
        return _stored_bins().copy()
    return compute_in_gamut_bins(grid)


@functools.cache
def _lookup(centres_bytes: bytes, grid: int) -> tuple[np.ndarray, np.ndarray]:
    """(the lowest cell (i, j), a dense table cell -> bin index, -1 where no bin)."""
    cells = _cells(np.frombuffer(centres_bytes, np.float32).reshape(-1, 2), grid)
    low = cells.min(axis=0)
    table = np.full(tuple(cells.max(axis=0) - low + 1), -1, np.int64)
    table[tuple((cells - low).T)] = np.arange(len(cells))
    return low, table


def nearest_bin(ab, centres=None, grid: int = GRID) -> np.ndarray:
    """The index of the nearest bin of each a,b (..., 2) in Lab units: a table lookup of
    its cell. Colours outside every bin's cell (no sRGB colour has them) get the nearest
    bin by distance."""
    centres = in_gamut_bins(grid) if centres is None else np.asarray(centres, np.float32)
    low, table = _lookup(np.ascontiguousarray(centres, np.float32).tobytes(), int(grid))
    ab = np.asarray(ab, np.float32)
    cells = _cells(ab.reshape(-1, 2), grid) - low
    inside = np.all((cells >= 0) & (cells < table.shape), axis=1)
    found = np.full(len(cells), -1, np.int64)
    found[inside] = table[cells[inside, 0], cells[inside, 1]]
    missing = np.nonzero(found < 0)[0]
    if len(missing):  # rare: a,b that no sRGB colour has
        distances = np.square(ab.reshape(-1, 2)[missing, None, :] - centres[None]).sum(-1)
        found[missing] = distances.argmin(axis=1)
    return found.reshape(ab.shape[:-1])


def soft_encode(ab, centres=None, neighbours: int = NEIGHBOURS,
                sigma: float = SOFT_SIGMA) -> tuple[np.ndarray, np.ndarray]:
    """(bin indices, weights), each (..., ``neighbours``): the nearest bins of each a,b
    (Lab units), nearest first, with Gaussian weights that sum to 1. The dense target is
    zero everywhere else; :class:`koala_lib.losses.SoftEncodedCrossEntropy` computes the
    same inside the loss."""
    centres = in_gamut_bins() if centres is None else np.asarray(centres, np.float32)
    if not 1 <= neighbours <= len(centres):
        raise ValueError(f"neighbours must be between 1 and {len(centres)}, got {neighbours}.")
    ab = np.asarray(ab, np.float32)
    squared = np.square(ab[..., None, :] - centres).sum(-1)
    nearest = np.argsort(squared, axis=-1, kind="stable")[..., :neighbours]
    distance = np.take_along_axis(squared, nearest, axis=-1)
    weights = np.exp(-(distance - distance[..., :1]) / (2 * sigma ** 2))
    return nearest, (weights / weights.sum(-1, keepdims=True)).astype(np.float32)


def bin_counts(ab_batches, centres=None) -> np.ndarray:
    """How many pixels of ``ab_batches`` (an iterable of a,b arrays in Lab units) fall in
    each bin (Q,)."""
    centres = in_gamut_bins() if centres is None else np.asarray(centres, np.float32)
    counts = np.zeros(len(centres), np.int64)
    for ab in ab_batches:
        counts += np.bincount(nearest_bin(ab, centres).ravel(), minlength=len(centres))
    return counts


def smoothed_prior(counts, centres=None, sigma: float = PRIOR_SIGMA) -> np.ndarray:
    """The bin distribution of ``counts``, smoothed by a Gaussian of ``sigma`` a,b units
    over the plane and normalised to sum to 1 (Q,)."""
    centres = in_gamut_bins() if centres is None else np.asarray(centres, np.float32)
    counts = np.asarray(counts, np.float64)
    if counts.shape != (len(centres),) or counts.sum() <= 0:
        raise ValueError(f"expected {len(centres)} bin counts with some pixels, got "
                         f"shape {counts.shape} summing to {counts.sum()}.")
    squared = np.square(centres[:, None, :] - centres[None]).sum(-1).astype(np.float64)
    smoothed = np.exp(-squared / (2 * sigma ** 2)) @ (counts / counts.sum())
    return smoothed / smoothed.sum()


def rebalancing_weights(prior, mix: float = PRIOR_MIX) -> np.ndarray:
    """Weights (Q,) proportional to 1 / ((1 - mix) * prior + mix / Q), scaled so that their
    expected value under ``prior`` (the smoothed distribution) is 1."""
    prior = np.asarray(prior, np.float64)
    if not 0 <= mix <= 1:
        raise ValueError(f"mix (lambda) must be in [0, 1], got {mix}.")
    if prior.ndim != 1 or np.any(prior < 0) or not np.isclose(prior.sum(), 1):
        raise ValueError("prior must be a distribution over the bins (non-negative, sum 1).")
    weights = 1.0 / ((1 - mix) * prior + mix / len(prior))
    return (weights / (prior * weights).sum()).astype(np.float32)


def annealed_mean(logits, centres=None, temperature: float = TEMPERATURE):
    """a,b (..., 2) in Lab units from logits (..., Q): the mean of the bins under
    softmax(logits / T). T = 1: the mean; T = 0: the mode (the most likely bin's centre).
    ``keras.ops`` only: numpy arrays and backend tensors alike."""
    from keras import ops

    centres = in_gamut_bins() if centres is None else np.asarray(centres, np.float32)
    if temperature < 0:
        raise ValueError(f"the temperature must be >= 0, got {temperature}.")
    logits = ops.cast(logits, "float32")
    if temperature == 0:
        return ops.take(ops.convert_to_tensor(centres), ops.argmax(logits, axis=-1), axis=0)
    probabilities = ops.softmax(logits / temperature, axis=-1)
    return ops.matmul(probabilities, ops.convert_to_tensor(centres))
