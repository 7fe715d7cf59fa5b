import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

from koala_lib import color, viz


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_save_fig_writes_a_png_under_the_figures_folder(tmp_path):
    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1], [0, 1])
    path = viz.save_fig("tiny", fig, resolution=100)
    assert path == tmp_path / "figures" / "tiny.png"
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
        # A 2 x 1 inch figure at 100 dpi, trimmed to its content.
        assert 100 < width <= 210 and 40 < height <= 110 and width > height


def test_lab_channel_figure_has_four_panels_and_neutral_channels_for_gray():
    gray = np.full((20, 30, 3), 128, np.uint8)
    fig = viz.plot_lab_channels(gray)
    axes = fig.get_axes()
    assert [ax.get_title() for ax in axes] == [
        "RGB", "L (lightness, 0-100)", "a (green - red)", "b (blue - yellow)"
    ]
    a_panel = axes[2].get_images()[0].get_array()
    # a = 0 everywhere renders as one neutral gray.
    assert np.ptp(np.asarray(a_panel), axis=(0, 1)).max() < 1e-6
    assert np.ptp(np.asarray(a_panel)[0, 0]) < 1e-4


def test_render_ab_channel_shows_the_sign_as_hue():
    ab = np.array([[[60.0, 0.0], [-60.0, 0.0]]])
    rendered = viz.render_ab_channel(ab, 0)
    red_plus, green_minus = rendered[0, 0], rendered[0, 1]
    assert red_plus[0] > red_plus[1]  # +a is redder than it is green
    assert green_minus[1] > green_minus[0]  # -a is greener than it is red
    yellow = viz.render_ab_channel(np.array([[[0.0, 60.0]]]), 1)[0, 0]
    assert yellow[2] < yellow[0] and yellow[2] < yellow[1]  # +b has little blue


def test_comparison_grid_layout_and_errors():
    rgb = np.random.default_rng(0).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    gray = color.rgb_to_gray(rgb)
    fig = viz.comparison_grid(gray, rgb, rgb, row_labels=["a", "b", "c"])
    assert len(fig.get_axes()) == 9
    assert [ax.get_title() for ax in fig.get_axes()[:3]] == [
        "Gray input", "Prediction", "Ground truth"
    ]
    with pytest.raises(ValueError, match="same number"):
        viz.comparison_grid(gray[:2], rgb, rgb)
    with pytest.raises(ValueError, match="row labels"):
        viz.comparison_grid(gray, rgb, rgb, row_labels=["only one"])
    with pytest.raises(ValueError, match="empty"):
        viz.image_grid({"nothing": []})


def test_ab_shift_explorer_updates_its_image_when_a_slider_moves():
    rgb = np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    explorer = viz.ab_shift_explorer(rgb)
    image, controls = explorer.children
    shift_a, shift_b, scale = controls.children
    before = image.value
    shift_a.value = 40
    assert image.value != before
    scale.value = 0.0
    shift_a.value = 0
    # chroma x 0 and no shift: the gray version of the image.
    from io import BytesIO

    shown = np.asarray(Image.open(BytesIO(image.value)).convert("RGB"))
    assert np.ptp(shown.astype(int), axis=-1).max() <= 1
