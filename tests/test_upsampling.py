"""Upsampling the colour to the photo's size: guided by the full-resolution L, or bilinear."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
from conftest import assert_same_8bit_image
from PIL import Image
from skimage import data as skdata

from koala_lib import color, colorize, trained_model
from koala_lib.__main__ import main

SIZE, SMALL = 256, 32  # an upsampling factor of 8


def _resize(plane: np.ndarray, shape) -> np.ndarray:
    return np.asarray(Image.fromarray(np.ascontiguousarray(plane, np.float32)).resize(
        (shape[1], shape[0]), Image.Resampling.BILINEAR))


@pytest.fixture(scope="module")
def two_colours():
    """A dark red-ish left half and a light blue-ish right half: (true Lab, a,b at 32x32).

    The small a,b are the truth at the centres of the model's pixels: a colour edge as sharp
    as 32x32 can hold, where the model was right. Only the upsampling can bleed."""
    lab = np.zeros((SIZE, SIZE, 3), np.float32)
    lab[:, : SIZE // 2] = (45, 45, 25)
    lab[:, SIZE // 2 :] = (70, -5, -40)
    lab = color.rgb_to_lab(color.to_uint8(color.lab_to_rgb(lab)))  # colours an image can hold
    step = SIZE // SMALL
    return lab, np.ascontiguousarray(lab[step // 2 :: step, step // 2 :: step, 1:])


def test_guided_upsampling_keeps_l_and_bleeds_less_colour_across_an_edge_than_bilinear(
        two_colours):
    lab, small_ab = two_colours
    edge, step = SIZE // 2, SIZE // SMALL
    errors = {}
    for method in colorize.UPSAMPLING:
        out = color.rgb_to_lab(colorize.merge_full_resolution(lab[..., 0], small_ab, method))
        assert np.abs(out[..., 0] - lab[..., 0]).max() < 0.5, method  # L: 8-bit rounding only
        error = np.linalg.norm(out[..., 1:] - lab[..., 1:], axis=-1).mean(axis=0)  # by column
        errors[method] = error[edge - 2 : edge + 2].mean()  # the 2 columns each side
        far = np.r_[: edge - 3 * step, edge + 3 * step : SIZE]
        assert error[far].max() < 1, method  # 3 model pixels away, no colour moved
    # Bilinear: 36 a,b units at the edge, 31 on average in the band; guided: 15 and 13, at the
    # price of errors up to 3 (about a just-noticeable difference) out to 2 radii from the edge.
    assert errors["guided"] < 0.5 * errors["bilinear"], errors


def test_guided_strips_equal_one_pass_over_the_whole_image(monkeypatch):
    import cv2

    rng = np.random.default_rng(0)
    lightness = np.clip(np.linspace(0, 100, 203)[:, None] + rng.normal(0, 8, (203, 150)), 0,
                        100).astype(np.float32)
    lightness[:, 70:] = np.clip(lightness[:, 70:] - 30, 0, 100)  # an edge, strips cut through
    small_ab = rng.uniform(-40, 40, (32, 24, 2)).astype(np.float32)
    radius = colorize.guided_radius(lightness.shape, small_ab.shape[:2])
    # The whole image in one pass, as upsample_ab documents it: p + G(L) - G(l).
    bilinear = np.stack([_resize(small_ab[..., i], lightness.shape) for i in (0, 1)], axis=-1)
    coarse = _resize(_resize(lightness, small_ab.shape[:2]), lightness.shape)

    def guided(guide):
        return cv2.ximgproc.guidedFilter(guide / np.float32(100), bilinear, radius,
                                         colorize.GUIDED_EPS, dDepth=-1)

    whole = bilinear + guided(lightness) - guided(coarse)
    expected = color.to_uint8(colorize.fit_gamut(lightness, whole))
    monkeypatch.setattr(colorize, "STRIP_PIXELS", 150 * 5)  # strips of 4 radii, the last short
    assert 4 * radius < lightness.shape[0] // 3  # several strips, each with both margins
    np.testing.assert_allclose(colorize.upsample_ab(lightness, small_ab), whole, atol=5e-3)
    strips = colorize.merge_full_resolution(lightness, small_ab, upsample="guided")
    assert_same_8bit_image(strips, expected)


@pytest.mark.parametrize("method", colorize.UPSAMPLING)
def test_a_flat_image_stays_flat(method):
    lightness = np.full((90, 70), 62.0, np.float32)
    small_ab = np.broadcast_to(np.float32([18.0, -12.0]), (16, 16, 2))
    ab = colorize.upsample_ab(lightness, small_ab, method)
    np.testing.assert_allclose(ab, np.broadcast_to(small_ab[0, 0], ab.shape), atol=1e-3)
    out = colorize.merge_full_resolution(lightness, small_ab, method)
    assert (out == out[0, 0]).all()


def test_on_flat_lightness_guided_gives_the_bilinear_colour():
    small_ab = np.random.default_rng(1).uniform(-30, 30, (15, 12, 2)).astype(np.float32)
    lightness = np.full((120, 100), 50.0, np.float32)
    np.testing.assert_allclose(colorize.upsample_ab(lightness, small_ab, "guided"),
                               colorize.upsample_ab(lightness, small_ab, "bilinear"), atol=1e-3)


def test_the_radius_grows_with_the_upsampling_factor():
    assert colorize.guided_radius((256, 256), (32, 32), 1.0) == 8
    assert colorize.guided_radius((3000, 4000), (224, 296), 1.0) == 14  # the larger factor
    assert colorize.guided_radius((100, 100), (224, 224), 1.0) == 1  # downsampling: at least 1
    assert colorize.guided_radius((256, 256), (32, 32)) == max(
        1, round(colorize.GUIDED_RADIUS_PER_FACTOR * 8))


def test_an_unknown_method_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="'guided', 'bilinear'"):
        colorize.merge_full_resolution(np.zeros((8, 8), np.float32),
                                       np.zeros((8, 8, 2), np.float32), "bicubic")


@pytest.mark.parametrize("cv2_module", [None, types.ModuleType("cv2")],
                         ids=["no OpenCV", "OpenCV without contrib"])
def test_without_opencv_contrib_guided_says_what_to_install_and_bilinear_still_works(
        monkeypatch, cv2_module):
    monkeypatch.setitem(sys.modules, "cv2", cv2_module)  # None: `import cv2` fails
    with pytest.raises(ImportError) as error:
        colorize.merge_full_resolution(np.zeros((8, 8), np.float32),
                                       np.zeros((8, 8, 2), np.float32))
    message = str(error.value)
    assert "pip install opencv-contrib-python-headless" in message
    assert 'upsample="bilinear"' in message and "--upsample bilinear" in message
    assert error.value.__cause__ is None and error.value.__suppress_context__
    out = colorize.merge_full_resolution(np.full((8, 8), 50, np.float32),
                                         np.zeros((8, 8, 2), np.float32), "bilinear")
    assert out.shape == (8, 8, 3)


def test_the_command_line_without_opencv_contrib_says_so_before_the_model_loads(
        saved_model, tmp_path, capsys, monkeypatch):
    photo = tmp_path / "photo.png"
    Image.fromarray(skdata.astronaut()[:64, :64]).save(photo)

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setitem(sys.modules, "cv2", None)
    monkeypatch.setattr(trained_model, "load_trained", no_loading)
    assert main(["colorize", str(photo), "--out", str(tmp_path / "out"), "--model",
                 str(saved_model), "--quiet"]) == 1
    printed = capsys.readouterr()
    assert "pip install opencv-contrib-python-headless" in printed.err
    assert "--upsample bilinear" in printed.err and "Traceback" not in printed.err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_the_command_line_upsample_option_chooses_the_method(saved_model, extractor,
                                                             tmp_path, capsys):
    photo = tmp_path / "photo.png"
    rgb = skdata.astronaut()[::2, ::3]  # 256 x 171: a,b upsampled 8 times
    Image.fromarray(rgb).save(photo)
    trained, _ = trained_model.load_trained(saved_model, extractor)
    outputs = {}
    for method in colorize.UPSAMPLING:
        out = tmp_path / method
        assert main(["colorize", str(photo), "--out", str(out), "--model", str(saved_model),
                     "--upsample", method, "--quiet"]) == 0
        outputs[method] = np.asarray(Image.open(out / "photo_colorized.png"))
        # The command line loads its own model and batches its photos: up to rounding.
        assert_same_8bit_image(
            outputs[method], colorize.colorize_rgb(trained, extractor, rgb, upsample=method))
    assert not np.array_equal(outputs["guided"], outputs["bilinear"])
    default = tmp_path / "default"
    assert main(["colorize", str(photo), "--out", str(default), "--model", str(saved_model),
                 "--quiet"]) == 0
    # Two runs of the same command on the same photo: the same calls, so the same bits.
    np.testing.assert_array_equal(np.asarray(Image.open(default / "photo_colorized.png")),
                                  outputs["guided"])
    with pytest.raises(SystemExit):
        main(["colorize", str(photo), "--out", str(tmp_path / "x"), "--upsample", "bicubic"])
    assert "invalid choice: 'bicubic'" in capsys.readouterr().err


def test_upsampling_ssim_scores_each_method_on_each_image(tmp_path):
    photos = [skdata.astronaut()[:200:2, :160:2], skdata.coffee()[::4, ::4]]
    path = tmp_path / "coffee.png"
    Image.fromarray(photos[1]).save(path)
    oracle = colorize.upsampling_ssim([photos[0], path], model_size=16)
    assert set(oracle) == set(colorize.UPSAMPLING)
    for scores in oracle.values():
        assert scores.shape == (2,) and (0.8 < scores).all() and (scores < 1).all()
    seen = []

    def gray(small_l):
        seen.append(small_l.shape)
        return np.zeros((*small_l.shape, 2), np.float32)

    predicted = colorize.upsampling_ssim(photos, model_size=16, predict=gray,
                                         methods=("bilinear",))
    assert list(predicted) == ["bilinear"]
    assert seen == [colorize.model_size_for(*photo.shape[:2], 16) for photo in photos]
    assert (predicted["bilinear"] < oracle["bilinear"]).all()  # gray loses the colour
