"""Colour bins of the classification head: the gamut, soft targets, rebalancing, read-out."""

from __future__ import annotations

import numpy as np
import pytest

from koala_lib import color, quantize


def test_the_stored_bins_are_the_cells_every_8_bit_srgb_colour_reaches():
    stored = quantize.in_gamut_bins()
    assert len(stored) == 261  # Zhang et al. state 313 for theirs: see the module doc
    np.testing.assert_array_equal(stored, quantize.compute_in_gamut_bins())
    assert np.all(stored % quantize.GRID == 0)


def test_bins_cover_every_colour_of_a_real_portrait(portrait_folder):
    from koala_lib.data import read_rgb

    ab = color.rgb_to_lab(read_rgb(portrait_folder / "us_congress" / "A000014.jpg"))[..., 1:]
    nearest = quantize.in_gamut_bins()[quantize.nearest_bin(ab)]
    # Every pixel's cell is a bin: its nearest centre is within half a cell on each axis.
    assert np.abs(nearest - ab).max() <= quantize.GRID / 2 + 1e-4


def test_quantisation_round_trip_recovers_in_gamut_colours():
    """a,b -> soft-encoded bins -> annealed mean: within the stated error of the colour."""
    centres = quantize.in_gamut_bins()
    rng = np.random.default_rng(0)
    # In-gamut colours: the a,b of random sRGB colours.
    ab = color.rgb_to_lab(rng.uniform(0, 1, (2000, 1, 3)))[:, 0, 1:]
    nearest, weights = quantize.soft_encode(ab)
    # The soft target as a distribution -> its log as logits -> read out.
    dense = np.full((len(ab), len(centres)), 1e-12)
    np.put_along_axis(dense, nearest, weights, axis=-1)
    logits = np.log(dense)
    mean = np.asarray(quantize.annealed_mean(logits, temperature=1.0))
    mode = np.asarray(quantize.annealed_mean(logits, temperature=0))
    annealed = np.asarray(quantize.annealed_mean(logits))
    # The mean of the soft target is within 5 a,b units of the colour (the nearest bins
    # pull it towards the grid); the mode is the nearest bin, within half a cell per axis.
    assert np.abs(mean - ab).max() < 5.0
    assert np.abs(mode - ab).max() <= quantize.GRID / 2 + 1e-4
    assert np.median(np.hypot(*(annealed - ab).T)) < 4.0
    np.testing.assert_array_equal(mode, centres[quantize.nearest_bin(ab)])


def test_soft_encoding_sums_to_one_with_five_non_zero_bins_nearest_first():
    ab = np.array([[12.0, -33.0], [0.0, 0.0], [55.5, 20.2]])
    nearest, weights = quantize.soft_encode(ab)
    assert nearest.shape == weights.shape == (3, 5)
    np.testing.assert_allclose(weights.sum(-1), 1, atol=1e-6)
    assert np.all(weights > 0) and np.all(np.diff(weights, axis=-1) <= 1e-7)
    assert all(len(set(row)) == 5 for row in nearest)
    centres = quantize.in_gamut_bins()
    distances = np.hypot(*(centres[nearest] - ab[:, None]).transpose(2, 0, 1))
    # Gaussian weights (sigma 5): w_i / w_0 = exp(-(d_i^2 - d_0^2) / 50).
    np.testing.assert_allclose(weights[:, 1:] / weights[:, :1],
                               np.exp(-(distances[:, 1:] ** 2 - distances[:, :1] ** 2) / 50),
                               rtol=1e-4)
    # A colour on a bin's centre puts most weight there; its 4 neighbours at 10 share the rest.
    centre_weight = 1 / (1 + 4 * np.exp(-100 / 50))
    assert weights[1, 0] == pytest.approx(centre_weight, rel=1e-5)


def test_rebalancing_weights_have_expected_value_one_under_the_prior():
    rng = np.random.default_rng(1)
    centres = quantize.in_gamut_bins()
    # A skewed colour distribution: mostly near-gray skin tones, a few vivid colours.
    ab = np.concatenate([rng.normal([12, 15], 6, (20000, 2)), rng.uniform(-80, 80, (500, 2))])
    counts = quantize.bin_counts([ab])
    assert counts.sum() == len(ab)
    prior = quantize.smoothed_prior(counts)
    assert prior.sum() == pytest.approx(1) and np.all(prior > 0)
    weights = quantize.rebalancing_weights(prior)
    assert float((prior * weights).sum()) == pytest.approx(1, rel=1e-5)
    # Rare colours weigh more than common ones, by at most 1 / (lambda / Q) over the mean.
    common, rare = quantize.nearest_bin(np.array([12, 15])), quantize.nearest_bin(
        np.array([-60, 60]))
    assert weights[rare] > 5 * weights[common]
    assert weights.max() <= len(centres) / quantize.PRIOR_MIX
    # lambda = 1 is no rebalancing: every weight is 1.
    np.testing.assert_allclose(quantize.rebalancing_weights(prior, mix=1.0), 1, rtol=1e-5)


def test_smoothing_spreads_one_bin_over_its_neighbours():
    centres = quantize.in_gamut_bins()
    counts = np.zeros(len(centres))
    counts[quantize.nearest_bin(np.array([0.0, 0.0]))] = 10
    prior = quantize.smoothed_prior(counts)
    neighbour = quantize.nearest_bin(np.array([10.0, 0.0]))
    assert prior[neighbour] / prior.max() == pytest.approx(np.exp(-100 / 50), rel=1e-5)


def test_temperature_goes_from_the_mode_to_the_mean():
    centres = quantize.in_gamut_bins()
    # Two colours: 60% a vivid red bin, 40% a blue one. The mean is a dull mauve between.
    red, blue = quantize.nearest_bin(np.array([60.0, 40.0])), quantize.nearest_bin(
        np.array([10.0, -50.0]))
    logits = np.full(len(centres), -30.0)
    logits[red], logits[blue] = np.log(0.6), np.log(0.4)
    chroma = {t: float(np.hypot(*np.asarray(quantize.annealed_mean(logits, temperature=t))))
              for t in (0, 0.1, 0.38, 1.0)}
    np.testing.assert_allclose(np.asarray(quantize.annealed_mean(logits, temperature=0)),
                               centres[red])
    assert chroma[0] > chroma[0.38] > chroma[1.0]
    np.testing.assert_allclose(np.asarray(quantize.annealed_mean(logits, temperature=1.0)),
                               0.6 * centres[red] + 0.4 * centres[blue], atol=1e-3)


def test_bad_settings_are_refused_clearly():
    with pytest.raises(ValueError, match="temperature"):
        quantize.annealed_mean(np.zeros(261), temperature=-1)
    with pytest.raises(ValueError, match="lambda"):
        quantize.rebalancing_weights(np.full(261, 1 / 261), mix=2)
    with pytest.raises(ValueError, match="bin counts"):
        quantize.smoothed_prior(np.zeros(261))
    with pytest.raises(ValueError, match="neighbours"):
        quantize.soft_encode(np.zeros((1, 2)), neighbours=0)
