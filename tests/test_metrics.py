"""Metrics on pairs whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data as skdata

from koala_lib import color, metrics


def test_identical_images_psnr_capped_and_ssim_one():
    photo = skdata.astronaut()[::4, ::4]
    assert metrics.psnr(photo, photo) == metrics.PSNR_CAP
    assert metrics.ssim(photo, photo) == pytest.approx(1.0)
    per_image = metrics.evaluate(photo[None], photo[None])
    assert per_image["ab_mse"][0] == 0 and per_image["colourfulness_gap"][0] == 0


def test_psnr_of_a_known_error_and_ssim_drops():
    photo = skdata.astronaut()[::4, ::4].astype(np.int16)
    shifted = np.clip(photo + 10, 0, 255)
    mse = np.mean((shifted - photo) ** 2.0)
    expected = 10 * np.log10(255 ** 2 / mse)
    assert metrics.psnr(photo.astype(np.uint8), shifted.astype(np.uint8)) == pytest.approx(
        expected, abs=1e-6)
    noisy = np.clip(photo + np.random.default_rng(0).normal(0, 40, photo.shape), 0, 255)
    assert metrics.ssim(photo.astype(np.uint8), noisy.astype(np.uint8)) < 0.6


def test_colourfulness_of_gray_and_of_a_flat_colour():
    gray = np.full((16, 16, 3), 128, np.uint8)
    assert metrics.colourfulness(gray) == 0
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 255  # rg = 255, yb = 127.5, no spread
    assert metrics.colourfulness(red) == pytest.approx(0.3 * np.hypot(255, 127.5))
    photo = skdata.astronaut()[::4, ::4]
    assert metrics.colourfulness(color.rgb_to_gray(photo)) < 1 < metrics.colourfulness(photo)


def test_summary_hue_and_words():
    photo = skdata.astronaut()[::4, ::4]
    gray = color.to_uint8(color.rgb_to_gray(photo))
    summary = metrics.summarize(metrics.evaluate(photo[None], gray[None]))
    assert summary["chroma"] < 1 and summary["colourfulness_gap"] < -10
    assert metrics.describe_colour(summary).startswith("grayish")
    brown = np.broadcast_to(np.array([110, 80, 60], np.uint8), photo.shape)
    warm = metrics.summarize(metrics.evaluate(photo[None], brown[None]))
    assert 0 < warm["hue"] < 90
    assert "brownish/reddish" in metrics.describe_colour(warm)


def test_bad_inputs_are_refused_clearly():
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.psnr(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9, 3), np.uint8))
    with pytest.raises(ValueError, match="at least 7x7"):
        metrics.ssim(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4, 3), np.uint8))
