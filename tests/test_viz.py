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


def test_comparison_grid_shows_gray_input_each_prediction_and_truth_from_model_arrays():
    rgb = np.random.default_rng(0).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    lightness, truth_ab = color.rgb_to_model(rgb)
    predictions = {"zeros": np.zeros_like(truth_ab), "halved": list(truth_ab / 2)}
    fig = viz.comparison_grid(lightness, predictions, truth_ab, row_labels=["a", "b", "c"])
    axes = np.array(fig.get_axes()).reshape(3, 4)
    assert [ax.get_title() for ax in axes[0]] == ["gray input", "zeros", "halved", "truth"]
    assert [ax.get_ylabel() for ax in axes[:, 0]] == ["a", "b", "c"]
    shown = [np.asarray(ax.get_images()[0].get_array()) for ax in axes[1]]
    gray_input, zeros, halved, truth = shown
    # The gray input is L with a = b = 0: neutral, and what a zero prediction shows.
    np.testing.assert_allclose(gray_input, zeros)
    assert np.ptp(gray_input, axis=-1).max() < 1e-3
    np.testing.assert_allclose(truth, rgb[1] / 255.0, atol=0.02)
    assert 0 < np.ptp(halved, axis=-1).mean() < np.ptp(truth, axis=-1).mean()


def test_comparison_grid_refuses_columns_that_do_not_match_the_gray_inputs():
    lightness, truth_ab = color.rgb_to_model(np.zeros((3, 8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="'short' has 2 images for 3 gray inputs"):
        viz.comparison_grid(lightness, {"short": truth_ab[:2]}, truth_ab)
    with pytest.raises(ValueError, match="'truth' has 2 images for 3 gray inputs"):
        viz.comparison_grid(lightness, {}, truth_ab[:2])
    with pytest.raises(ValueError, match=r"shape \(3, 4, 4, 2\)"):
        viz.comparison_grid(lightness, {"small": truth_ab[:, :4, :4]}, truth_ab)
    with pytest.raises(ValueError, match="hide the grid's own 'truth'"):
        viz.comparison_grid(lightness, {"truth": truth_ab}, truth_ab)
    with pytest.raises(ValueError, match="row labels"):
        viz.comparison_grid(lightness, {}, truth_ab, row_labels=["only one"])


def test_image_grid_refuses_uneven_or_empty_columns():
    with pytest.raises(ValueError, match="same number"):
        viz.image_grid({"two": [np.zeros((4, 4))] * 2, "one": [np.zeros((4, 4))]})
    with pytest.raises(ValueError, match="empty"):
        viz.image_grid({"nothing": []})


def test_image_grid_wraps_long_column_titles_to_the_column_width():
    image = [np.zeros((4, 4))]
    long = "classification (T = 0.6), bilinear"
    fig = viz.image_grid({"MSE": image, long: image, "two\nlines": image}, size=1.7)
    short_title, long_title, given = [ax.get_title() for ax in fig.get_axes()]
    assert short_title == "MSE" and given == "two\nlines"
    assert "\n" in long_title and long_title.replace("\n", " ") == long
    assert any("T = 0.6" in line for line in long_title.split("\n"))  # a setting stays whole
    # Each line fits its column: narrower than the column is wide.
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    column_pixels = 1.7 * fig.dpi
    assert fig.get_axes()[1].title.get_window_extent(renderer).width < column_pixels
    # A wider column keeps the same title on one line.
    wide = viz.image_grid({long: image}, size=4)
    assert wide.get_axes()[0].get_title() == long


def test_row_labels_leave_the_first_column_without_a_frame():
    images = [np.zeros((8, 8, 3), np.uint8)] * 2
    fig = viz.image_grid({"a": images, "b": images}, row_labels=["one", "two"])
    first, second = fig.axes[0], fig.axes[2]  # column a of row 1, column a of row 2
    assert (first.get_ylabel(), second.get_ylabel()) == ("one", "two")
    assert not any(spine.get_visible() for spine in first.spines.values())
    plt.close(fig)


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


# Snapshots as ColorizationSnapshots writes them: gray, prediction and truth strips stacked.
GRAY, TRUTH = (128, 128, 128), (0, 0, 255)
PREDICTED = {1: (255, 0, 0), 2: (0, 255, 0), 3: (255, 0, 255)}


def _write_snapshots(folder, epochs=PREDICTED, portraits=3, size=8):
    paths = []
    for epoch, predicted in epochs.items():
        strips = [np.full((size, size * portraits, 3), value, np.uint8)
                  for value in (GRAY, predicted, TRUTH)]
        path = folder / f"epoch_{epoch:03d}.png"
        Image.fromarray(np.concatenate(strips)).save(path)
        paths.append(path)
    return paths


def _pixels_near(image, rgb) -> int:
    return int((np.abs(image.astype(int) - rgb).max(axis=-1) < 30).sum())


def test_read_snapshot_splits_the_three_strips(tmp_path):
    path = _write_snapshots(tmp_path, {4: (255, 0, 0)})[0]
    strips = viz.read_snapshot(path)
    assert list(strips) == ["gray input", "prediction", "truth"]
    assert {strip.shape for strip in strips.values()} == {(8, 24, 3)}
    assert (strips["prediction"] == (255, 0, 0)).all() and (strips["truth"] == TRUTH).all()
    assert viz.snapshot_epoch(path) == 4 and viz.snapshot_epoch(tmp_path / "x.png", 2) == 3
    Image.fromarray(np.zeros((10, 8, 3), np.uint8)).save(tmp_path / "odd.png")
    with pytest.raises(ValueError, match="not a snapshot"):
        viz.read_snapshot(tmp_path / "odd.png")


def test_snapshot_grid_labels_every_row(tmp_path):
    paths = _write_snapshots(tmp_path)
    fig = viz.snapshot_grid(paths)
    axes = fig.get_axes()
    assert [ax.get_ylabel() for ax in axes] == [
        "gray input", "epoch 1", "epoch 2", "epoch 3", "truth"]
    shown = [np.asarray(ax.get_images()[0].get_array()) for ax in axes]
    assert (shown[0] == GRAY).all() and (shown[-1] == TRUTH).all()
    for strip, epoch in zip(shown[1:-1], PREDICTED, strict=True):
        assert (strip == PREDICTED[epoch]).all()
    # Many epochs: the first, the last and evenly spaced ones between.
    many = _write_snapshots(tmp_path, {epoch: (epoch, 0, 0) for epoch in range(1, 11)})
    labels = [ax.get_ylabel() for ax in viz.snapshot_grid(many, max_epochs=4).get_axes()]
    assert labels == ["gray input", "epoch 1", "epoch 4", "epoch 7", "epoch 10", "truth"]
    with pytest.raises(ValueError, match="no snapshots"):
        viz.snapshot_grid([])


def test_snapshot_slider_shows_the_epoch_it_is_set_to(tmp_path):
    from io import BytesIO

    slider, image = viz.snapshot_slider(_write_snapshots(tmp_path)).children
    assert list(slider.options) == [1, 2, 3] and slider.value == 1

    def shown():
        return np.asarray(Image.open(BytesIO(image.value)).convert("RGB"))

    first = image.value
    assert _pixels_near(shown(), PREDICTED[1]) > 0 and _pixels_near(shown(), TRUTH) > 0
    slider.value = 2
    assert image.value != first
    assert _pixels_near(shown(), PREDICTED[2]) > 0 and _pixels_near(shown(), PREDICTED[1]) == 0
    assert _pixels_near(shown(), GRAY) > 0 and _pixels_near(shown(), TRUTH) > 0
    slider.value = 1
    assert image.value == first
    assert not plt.get_fignums()  # rendered figures are closed, never shown by pyplot
    assert viz.snapshot_slider([]) is None
