import numpy as np
import pytest

from koala_lib import color
from koala_lib.data import list_images, read_rgb

# Reference values for sRGB primaries under D65 (Bruce Lindbloom's calculator; the
# same figures appear in every CIE Lab table).
KNOWN = [
    ((255, 0, 0), (53.24, 80.09, 67.20)),
    ((0, 255, 0), (87.73, -86.18, 83.18)),
    ((0, 0, 255), (32.30, 79.19, -107.86)),
    ((255, 255, 255), (100.0, 0.0, 0.0)),
    ((0, 0, 0), (0.0, 0.0, 0.0)),
    ((128, 128, 128), (53.59, 0.0, 0.0)),
]


@pytest.mark.parametrize(("rgb", "lab"), KNOWN)
def test_known_srgb_values(rgb, lab):
    got = color.rgb_to_lab(np.array([[rgb]], np.uint8))[0, 0]
    np.testing.assert_allclose(got, lab, atol=0.01)


def test_uint16_and_float_inputs_match_uint8():
    rng = np.random.default_rng(0)
    rgb8 = rng.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    rgb16 = rgb8.astype(np.uint16) * 257  # 255 * 257 = 65535
    rgbf = rgb8.astype(np.float64) / 255
    lab8 = color.rgb_to_lab(rgb8)
    np.testing.assert_allclose(color.rgb_to_lab(rgb16), lab8, atol=1e-3)
    np.testing.assert_allclose(color.rgb_to_lab(rgbf), lab8, atol=1e-3)
    assert lab8.dtype == np.float32


def test_batches_of_any_rank_convert_like_single_images():
    rng = np.random.default_rng(1)
    batch = rng.integers(0, 256, size=(2, 3, 4, 5, 3), dtype=np.uint8)
    lab = color.rgb_to_lab(batch)
    assert lab.shape == batch.shape
    np.testing.assert_allclose(lab[1, 2], color.rgb_to_lab(batch[1, 2]), atol=1e-5)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((8, 8), np.uint8), "grayscale"),
        (np.zeros((8, 8, 1), np.uint8), "grayscale"),
        (np.zeros((8, 8, 4), np.uint8), "RGBA"),
        (np.zeros((8,), np.uint8), "shape"),
        (np.full((2, 2, 3), 2.0), r"\[0, 1\]"),
        (np.full((2, 2, 3), -0.5), r"\[0, 1\]"),
        (np.zeros((2, 2, 3), np.int32), "dtype"),
    ],
)
def test_rejects_bad_rgb_with_a_clear_message(array, message):
    with pytest.raises((ValueError, TypeError), match=message):
        color.rgb_to_lab(array)


def test_rejects_nan_in_rgb_and_lab():
    rgb = np.zeros((2, 2, 3))
    rgb[1, 1, 2] = np.nan
    with pytest.raises(ValueError, match="1 NaN"):
        color.rgb_to_lab(rgb)
    lab = np.zeros((2, 2, 3))
    lab[0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        color.lab_to_rgb(lab)


def test_split_merge_round_trip_and_shapes():
    lab = color.rgb_to_lab(np.random.default_rng(2).random((3, 6, 4, 3)))
    lightness, ab = color.split_lab(lab)
    assert lightness.shape == (3, 6, 4, 1) and ab.shape == (3, 6, 4, 2)
    np.testing.assert_array_equal(color.merge_lab(lightness, ab), lab)
    np.testing.assert_array_equal(color.merge_lab(lightness[..., 0], ab), lab)
    with pytest.raises(ValueError, match="does not match"):
        color.merge_lab(lightness[:, :3], ab)


def test_network_scaling_ranges_and_inverse():
    lightness = np.array([0.0, 50.0, 100.0])
    np.testing.assert_allclose(color.scale_l(lightness), [-1, 0, 1])
    np.testing.assert_allclose(color.unscale_l(color.scale_l(lightness)), lightness, atol=1e-5)
    ab = np.array([-128.0, 0.0, 64.0])
    np.testing.assert_allclose(color.scale_ab(ab), [-1, 0, 0.5])
    np.testing.assert_allclose(color.unscale_ab(color.scale_ab(ab)), ab)
    # Every sRGB colour lands inside the tanh range.
    cube = np.stack(np.meshgrid(*[np.linspace(0, 1, 17)] * 3, indexing="ij"), -1)
    scaled_l, scaled_ab = color.rgb_to_model(cube)
    assert scaled_l.min() >= -1 - 1e-6 and scaled_l.max() <= 1 + 1e-6
    assert np.abs(scaled_ab).max() < 1.0


def test_model_round_trip_reproduces_the_image():
    rgb = np.random.default_rng(3).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    back = color.to_uint8(color.model_to_rgb(*color.rgb_to_model(rgb)))
    assert np.abs(back.astype(int) - rgb).max() <= 1


def test_gray_keeps_lightness_and_drops_colour():
    rgb = np.random.default_rng(4).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    gray = color.rgb_to_gray(rgb)
    gray_lab = color.rgb_to_lab(gray)
    np.testing.assert_allclose(gray_lab[..., 0], color.rgb_to_lab(rgb)[..., 0], atol=0.05)
    assert color.chroma(gray_lab).max() < 0.05
    # A gray image has equal R, G and B.
    assert np.ptp(gray, axis=-1).max() < 1e-4  # far below one 8-bit step


def test_round_trips_on_real_portraits(portrait_folder):
    paths = list_images(portrait_folder)[::97][:12]
    assert len(paths) >= 10
    worst_float, packed_means = 0, []
    for path in paths:
        rgb = read_rgb(path)
        lab = color.rgb_to_lab(rgb)
        # Float Lab keeps every bit of an 8-bit photo: back to uint8, nothing changed.
        back = color.to_uint8(color.lab_to_rgb(lab))
        worst_float = max(worst_float, int(np.abs(back.astype(int) - rgb).max()))
        # Lab stored in 8 bits per channel loses a little, under half a CIEDE2000 unit.
        unpacked = color.unpack_lab(*color.pack_lab(lab))
        back8 = color.to_uint8(color.lab_to_rgb(unpacked))
        packed_means.append(color.delta_e(lab, color.rgb_to_lab(back8)).mean())
    assert worst_float == 0
    assert max(packed_means) < 0.5, packed_means
    assert min(packed_means) > 0.01, packed_means  # 8-bit storage is not lossless


def test_pack_lab_dtypes_and_clipping():
    lab = np.array([[[100.0, 127.4, -128.0], [0.0, -200.0, 300.0], [60.0, 0.4, -0.6]]])
    packed_l, packed_ab = color.pack_lab(lab)
    assert packed_l.dtype == np.uint8 and packed_ab.dtype == np.int8
    assert packed_l[0, :, 0].tolist() == [255, 0, 153]
    assert packed_ab[0].tolist() == [[127, -128], [-128, 127], [0, -1]]


def test_gamut_clipping_is_clipped_flagged_and_measured():
    in_gamut = color.rgb_to_lab(np.array([[[200, 120, 90]]], np.uint8))
    out_of_gamut = np.array([[[50.0, 127.0, -127.0], [95.0, -80.0, 90.0]]])
    rgb, clipped = color.lab_to_rgb(np.concatenate([in_gamut, out_of_gamut], 1),
                                    return_clipped=True)
    assert rgb.min() >= 0.0 and rgb.max() <= 1.0
    assert clipped.tolist() == [[False, True, True]]
    errors = color.gamut_error(np.concatenate([in_gamut, out_of_gamut], 1))[0]
    assert errors[0] < 1e-6 and errors[1] > 5 and errors[2] > 2


def test_hue_and_chroma_of_known_colours():
    lab = color.rgb_to_lab(np.array([[[255, 0, 0], [255, 255, 0], [0, 0, 255]]], np.uint8))
    hue = color.hue_degrees(lab)[0]
    assert 30 < hue[0] < 50  # red
    assert 95 < hue[1] < 105  # yellow
    assert 295 < hue[2] < 310  # blue
    np.testing.assert_allclose(color.chroma(lab)[0, 0], np.hypot(80.09, 67.20), atol=0.02)
