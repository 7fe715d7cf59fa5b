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


def lab_image(size, face_lab, background_lab, elsewhere_lab=(60.0, 0.0, 0.0)):
    """An 8-bit RGB image of known colours: ``face_lab`` in the face region,
    ``background_lab`` in the background corners, ``elsewhere_lab`` between them."""
    masks = metrics.region_masks(size)
    lab = np.empty((size, size, 3))
    lab[:] = elsewhere_lab
    lab[masks["face"]] = face_lab
    lab[masks["background"]] = background_lab
    return color.to_uint8(color.lab_to_rgb(lab))


def lab_at(lightness, hue, chroma):
    return (lightness, chroma * np.cos(np.radians(hue)), chroma * np.sin(np.radians(hue)))


def test_face_and_background_regions_are_apart_and_where_a_portrait_has_them():
    masks = metrics.region_masks(64)
    face, background = masks["face"], masks["background"]
    assert not (face & background).any()
    assert 0.08 < face.mean() < 0.16 and 0.08 < background.mean() < 0.16
    assert face[32, 32] and not face[2, 2] and background[2, 2] and background[2, 61]
    assert not background[60, 2]  # the bottom corners are shoulders, not background


@pytest.mark.parametrize(("hue", "family"), [
    (0, "pink/red"), (340, "pink/red"), (45, "brown/orange"), (95, "yellow"), (165, "green"),
    (204, "teal"), (250, "blue"), (305, "purple/mauve"), (359.9, "pink/red"),
    (-15, "pink/red")])
def test_hue_families_name_known_hues(hue, family):
    assert metrics.hue_family(hue) == family


# Hand-made truths and predictions of known hue and chroma: skin faces (hue 50, chroma 25)
# before a blue backdrop (hue 250, chroma 15), as the shared portraits have them.
SKIN, BACKDROP = lab_at(65, 50, 25), lab_at(70, 250, 15)


@pytest.mark.parametrize(("face", "background", "verdict"), [
    (SKIN, BACKDROP, "blue background"),  # the truth itself: skin faces, blue backdrop
    (lab_at(65, 50, 5), lab_at(70, 250, 3), "grayish"),  # a fifth of the chroma
    (lab_at(65, 40, 25), lab_at(70, 30, 15), "brownish/reddish"),  # warm everywhere
    (lab_at(65, 165, 25), BACKDROP, "green faces, blue background"),
    (lab_at(65, 305, 15), lab_at(70, 250, 10), "purple/mauve (muted) faces"),
    (lab_at(65, 165, 9), BACKDROP, "grayish green faces, blue background"),  # 36%: faint
    (lab_at(65, 50, 4), BACKDROP, "gray faces, blue background"),  # 16%: no hue to name
])
def test_verdict_names_what_each_region_shows(face, background, verdict):
    truth = lab_image(64, SKIN, BACKDROP)
    predicted = lab_image(64, face, background)
    summary = metrics.summarize(metrics.evaluate(truth[None], predicted[None]))
    assert verdict in metrics.describe_colour(summary)
    assert summary["face_hue_truth"] == pytest.approx(50, abs=1.5)
    assert summary["face_chroma_truth"] == pytest.approx(25, abs=1.5)
    assert summary["background_hue_truth"] == pytest.approx(250, abs=1.5)
    assert "(truth brown/orange: 5" in metrics.describe_region(summary, "face")


def test_a_blue_background_does_not_hide_green_faces():
    # The old rule: the hue of the whole image's mean a,b. A large blue backdrop and green
    # faces average to a hue that names neither; the regions name both.
    truth = lab_image(64, SKIN, BACKDROP, elsewhere_lab=BACKDROP)
    predicted = lab_image(64, lab_at(65, 165, 25), BACKDROP, elsewhere_lab=BACKDROP)
    summary = metrics.summarize(metrics.evaluate(truth[None], predicted[None]))
    assert metrics.hue_family(summary["hue"]) == "blue"
    assert metrics.describe_colour(summary).startswith("green faces")


def test_faces_of_mixed_hues_are_mottled():
    truth = lab_image(64, SKIN, BACKDROP)
    lab = color.rgb_to_lab(truth)
    face = metrics.region_masks(64)["face"]
    stripes = (np.arange(64)[None, :] // 2 % 2 == 0) & face  # pink and green columns
    lab[stripes] = lab_at(65, 330, 25)
    lab[face & ~stripes] = lab_at(65, 150, 25)
    predicted = color.to_uint8(color.lab_to_rgb(lab))
    summary = metrics.summarize(metrics.evaluate(truth[None], predicted[None]))
    assert summary["face_consistency"] < 0.5 < summary["face_consistency_truth"]
    assert metrics.describe_colour(summary).startswith("mottled faces")


def face_of(size, first_lab, second_lab):
    """A Lab image, neutral but for its face region: ``first_lab`` and ``second_lab`` in
    alternate columns there."""
    lab = np.empty((size, size, 3))
    lab[:] = (65.0, 0.0, 0.0)
    face = metrics.region_masks(size)["face"]
    columns = (np.arange(size)[None, :] % 2 == 0) & face
    lab[columns] = first_lab
    lab[face & ~columns] = second_lab
    return lab


def test_colours_that_cancel_are_not_graded_as_colour():
    # Half the face +a, half -a: every pixel has chroma 25, their mean a,b has none.
    truth = metrics.region_colours(face_of(64, (65, 25, 0), (65, 25, 0)))
    cancelling = metrics.region_colours(face_of(64, (65, 25, 0), (65, -25, 0)))
    assert truth["face_chroma"] == pytest.approx(25) == truth["face_pixel_chroma"]
    assert truth["face_consistency"] == pytest.approx(1)
    assert cancelling["face_pixel_chroma"] == pytest.approx(25)
    assert cancelling["face_chroma"] < 1 and cancelling["face_consistency"] < 0.05

    def word(predicted):
        summary = {**predicted, **{f"{key}_truth": value for key, value in truth.items()}}
        return metrics.describe_region(summary, "face").split(":")[0]

    assert word(truth) == "pink/red"  # uniform, the same per-pixel chroma: coloured
    assert word(cancelling) == "mottled"
    assert metrics.region_family(word(cancelling)) is None
    # Hues 110 degrees apart cancel in part: the mean's chroma is cos 55 = 57% of the
    # pixels' (not mottled), and the word is graded on it: muted, not full pink/red.
    partly = metrics.region_colours(face_of(64, lab_at(65, 55, 25), lab_at(65, -55, 25)))
    assert partly["face_consistency"] == pytest.approx(np.cos(np.radians(55)), abs=0.01)
    assert word(partly) == "pink/red (muted)"
    # Weak colours that cancel are gray, not mottled: the pixels hardly have colour.
    assert word(metrics.region_colours(face_of(64, (65, 4, 0), (65, -4, 0)))) == "gray"
    assert "C 0.0 (truth pink/red: 0 deg, C 25.0)" in metrics.describe_region(
        {**cancelling, **{f"{key}_truth": value for key, value in truth.items()}}, "face")
    # Cancelling colours everywhere: mottled, not the report's "grayish" (a washed-out gray).
    noise = np.empty((64, 64, 3))
    noise[:] = (65, 25, 0)
    noise[:, 1::2] = (65, -25, 0)
    uniform = metrics.region_colours(np.broadcast_to((65.0, 25.0, 0.0), (64, 64, 3)))
    summary = {**metrics.region_colours(noise),
               **{f"{key}_truth": value for key, value in uniform.items()}}
    assert metrics.describe_colour(summary) == "mottled faces, mottled background"


def test_ciede2000_is_zero_for_identical_images_and_grows_with_an_ab_shift():
    photo = skdata.astronaut()[::8, ::8]
    lab = color.rgb_to_lab(photo)
    shifted = [color.to_uint8(color.lab_to_rgb(lab + (0, shift, shift))) for shift in (3, 10)]
    per_image = metrics.evaluate(np.stack([photo] * 3), np.stack([photo, *shifted]))
    assert per_image["delta_e"][0] == 0
    assert 0 < per_image["delta_e"][1] < per_image["delta_e"][2]
    by_hand = color.delta_e(color.rgb_to_lab(photo), color.rgb_to_lab(shifted[1])).mean()
    assert per_image["delta_e"][2] == pytest.approx(by_hand)


def test_summary_hue_is_a_chroma_weighted_circular_mean():
    photo = skdata.astronaut()[::4, ::4]
    gray = color.to_uint8(color.rgb_to_gray(photo))
    summary = metrics.summarize(metrics.evaluate(photo[None], gray[None]))
    assert summary["chroma"] < 1 and summary["colourfulness_gap"] < -10
    assert metrics.describe_colour(summary) == "grayish"
    per_image = {"psnr": np.ones(2), "chroma": np.array([1.0, 3.0]), "hue": np.array([350, 20])}
    # sum of w sin = -0.174 + 3 x 0.342, of w cos = 0.985 + 3 x 0.940: atan2 -> 12.63 deg
    assert metrics.summarize(per_image)["hue"] == pytest.approx(12.63, abs=0.01)


def test_region_rule_holds_on_the_real_portraits(portrait_folder):
    # The rule's regions, checked where they are used: the true faces of the shared colour
    # portraits are skin-coloured, their background corners are the blue backdrop.
    from koala_lib.data import read_manifest
    from koala_lib.data.images import read_rgb, square_crop_resize

    rows = [row for row in read_manifest(portrait_folder) if row["mode"] == "RGB"]
    assert len(rows) > 1000
    images = np.stack([square_crop_resize(read_rgb(portrait_folder / row["path"]), 64)
                       for row in rows])
    colours = [metrics.region_colours(color.rgb_to_lab(image)) for image in images]
    skin = [metrics.hue_family(c["face_hue"]) in metrics.SKIN_FAMILIES for c in colours]
    blue = [metrics.hue_family(c["background_hue"]) == "blue" for c in colours]
    assert np.mean(skin) > 0.98 and np.mean(blue) > 0.85
    # True faces are not mottled (and are not the "mottled" or "gray" of a prediction).
    assert np.median([c["face_consistency"] for c in colours]) > 0.9
def test_bad_inputs_are_refused_clearly():
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.psnr(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9, 3), np.uint8))
    with pytest.raises(ValueError, match="at least 7x7"):
        metrics.ssim(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4, 3), np.uint8))
