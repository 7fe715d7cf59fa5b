"""Figures: one ``save_fig`` for every notebook, the Lab channel figure, comparison grids,
the training snapshots (a labelled grid, and a slider over the epochs)."""

from __future__ import annotations

import io
import re
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from koala_lib import color
from koala_lib.environment import figures_dir

# L used to render the a and b channels in colour: bright enough that hues are visible.
CHANNEL_RENDER_L = 70.0

# Characters of a 10 pt column title per inch of column: DejaVu Sans sets 12.5-15.5 a inch,
# and a column leaves its title a little less than its width (the gaps between images).
TITLE_CHARACTERS_PER_INCH = 11


def save_fig(name: str, fig=None, tight_layout: bool = True, resolution: int = 150) -> Path:
    """Save ``fig`` (default: the current figure) as ``<figures>/<name>.png``; return the path."""
    fig = fig or plt.gcf()
    path = figures_dir() / f"{name}.png"
    if tight_layout:
        fig.tight_layout()
    fig.savefig(path, format="png", dpi=resolution, bbox_inches="tight", pad_inches=0.05)
    return path


def notebook_style(dpi: int = 80, jpeg_quality: int = 88) -> None:
    """Inline figures as JPEG at a modest dpi: photos in PNG make notebooks megabytes large.

    Only the notebook display changes; :func:`save_fig` still writes lossless PNG.
    """
    plt.rcParams["figure.dpi"] = dpi
    try:
        from IPython import get_ipython
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:
        return
    if get_ipython() is not None:
        set_matplotlib_formats("jpeg", pil_kwargs={"quality": jpeg_quality})


def render_ab_channel(ab, channel: int, lightness: float = CHANNEL_RENDER_L) -> np.ndarray:
    """Show one of a (channel 0) or b (channel 1) as the colours it encodes.

    The other colour channel is set to 0 and L to a constant, so that only the chosen
    channel varies: a runs green (-) to red/magenta (+), b runs blue (-) to yellow (+).
    """
    ab = np.asarray(ab, np.float32)
    rendered = np.zeros(ab.shape[:-1] + (3,), np.float32)
    rendered[..., 0] = lightness
    rendered[..., 1 + channel] = ab[..., channel]
    return color.lab_to_rgb(rendered)


def _show(ax, image, title: str, **kwargs) -> None:
    ax.imshow(image, **kwargs)
    ax.set_title(title, fontsize=10)
    ax.axis("off")


def plot_lab_channels(rgb, title: str | None = None):
    """The report's Fig. 2: the photo and its L, a and b channels side by side."""
    lab = color.rgb_to_lab(rgb)
    fig, axes = plt.subplots(1, 4, figsize=(12, 3.8))
    _show(axes[0], color.as_float_rgb(rgb), "RGB")
    _show(axes[1], lab[..., 0], "L (lightness, 0-100)", cmap="gray", vmin=0, vmax=100)
    _show(axes[2], render_ab_channel(lab[..., 1:], 0), "a (green - red)")
    _show(axes[3], render_ab_channel(lab[..., 1:], 1), "b (blue - yellow)")
    if title:
        fig.suptitle(title)
    return fig


def image_grid(columns: Mapping[str, Sequence], row_labels: Sequence[str] | None = None,
               size: float = 2.4):
    """A grid with one column per entry of ``columns`` (title -> images), one row per image.

    Titles are wrapped to the column's width (``size`` inches), so long ones never run into
    their neighbours; a title's own line breaks are kept.
    """
    titles = list(columns)
    if not titles:
        raise ValueError("image_grid needs at least one column of images.")
    rows = {len(columns[t]) for t in titles}
    if len(rows) != 1:
        raise ValueError(f"every column needs the same number of images, got {sorted(rows)}.")
    n_rows = rows.pop()
    if n_rows == 0:
        raise ValueError("image_grid got empty columns: nothing to show.")
    fig, axes = plt.subplots(
        n_rows, len(titles), figsize=(size * len(titles), size * n_rows), squeeze=False
    )
    for col, title in enumerate(titles):
        for row in range(n_rows):
            image = np.asarray(columns[title][row])
            if image.ndim == 2 or image.shape[-1] == 1:
                _show(axes[row, col], image.squeeze(), "", cmap="gray")
            else:
                _show(axes[row, col], color.as_float_rgb(image), "")
            if row == 0:
                axes[row, col].set_title(_wrap_title(title, size), fontsize=10)
    if row_labels is not None:
        if len(row_labels) != n_rows:
            raise ValueError(f"{len(row_labels)} row labels for {n_rows} rows.")
        for row, label in enumerate(row_labels):
            _label_row(axes[row, 0], label)
    return fig


def _wrap_title(title: str, size: float) -> str:
    """``title`` broken into lines that fit a column ``size`` inches wide (at least 8
    characters a line; words longer than that are split, its own line breaks kept). A
    setting "T = 0.6" stays on one line."""
    width = max(8, int(size * TITLE_CHARACTERS_PER_INCH))
    joined = str(title).replace(" = ", "\N{NO-BREAK SPACE}=\N{NO-BREAK SPACE}")
    return "\n".join(textwrap.fill(line, width, break_on_hyphens=False)
                     for line in joined.split("\n")).replace("\N{NO-BREAK SPACE}", " ")


def _label_row(ax, label: str, horizontal: bool = False) -> None:
    """Write ``label`` left of ``ax`` (an image axes, its ticks and frame hidden)."""
    ax.axis("on")  # the label needs the axis; the frame would look like part of the image
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    if horizontal:
        ax.set_ylabel(label, fontsize=10, rotation=0, ha="right", va="center", labelpad=6)
    else:
        ax.set_ylabel(label, fontsize=9)


COMPARISON_INPUT, COMPARISON_TRUTH = "gray input", "truth"


def comparison_grid(lightness, predictions: Mapping[str, object], truth_ab,
                    row_labels: Sequence[str] | None = None, size: float = 1.8):
    """The model's colorizations side by side, one row per image: the gray input (L with
    a = b = 0), one column per entry of ``predictions`` ({title: scaled a,b (N, S, S, 2)}),
    then the truth. ``lightness`` is the scaled L (N, S, S, 1) and ``truth_ab`` the scaled
    a,b, as the model sees them (``PreparedSet.model_arrays``)."""
    lightness = np.asarray(lightness, np.float32)
    truth_ab = np.asarray(truth_ab, np.float32)
    if lightness.ndim != 4 or lightness.shape[-1] != 1:
        raise ValueError(f"comparison_grid needs scaled L of shape (N, S, S, 1), got "
                         f"{lightness.shape}.")
    expected = (*lightness.shape[:-1], 2)
    ab_columns = {COMPARISON_TRUTH: truth_ab}
    for title, ab in predictions.items():
        if title in (COMPARISON_INPUT, COMPARISON_TRUTH):
            raise ValueError(f"a prediction titled {title!r} would hide the grid's own "
                             f"{title!r} column: name it otherwise.")
        ab_columns[title] = np.asarray(ab, np.float32)
    for title, ab in ab_columns.items():
        count = len(ab) if ab.ndim else 0
        if count != len(lightness):
            raise ValueError(f"{title!r} has {count} images for {len(lightness)} gray inputs: "
                             "every column needs one image a row.")
        if ab.shape != expected:
            raise ValueError(f"{title!r} has a,b of shape {ab.shape}; the gray inputs "
                             f"{lightness.shape} need {expected}.")
    columns = {COMPARISON_INPUT: color.model_to_rgb(lightness, np.zeros(expected, np.float32))}
    columns |= {title: color.model_to_rgb(lightness, ab_columns[title]) for title in predictions}
    columns[COMPARISON_TRUTH] = color.model_to_rgb(lightness, truth_ab)
    return image_grid(columns, row_labels=row_labels, size=size)


def ab_shift_explorer(rgb, max_shift: int = 60):
    """An ipywidgets explorer: sliders shift a and b and scale chroma on ``rgb``.

    Returns None when ipywidgets is not installed; callers then show a static figure.
    """
    try:
        import ipywidgets as widgets
    except ImportError:
        return None

    lightness, ab = color.split_lab(color.rgb_to_lab(rgb))

    def render(shift_a: int, shift_b: int, chroma_scale: float) -> bytes:
        shifted = color.merge_lab(lightness, ab * chroma_scale + [shift_a, shift_b])
        buffer = io.BytesIO()
        plt.imsave(buffer, color.lab_to_rgb(shifted), format="png")
        return buffer.getvalue()

    slider = dict(min=-max_shift, max=max_shift, step=1, value=0, continuous_update=False)
    shift_a = widgets.IntSlider(description="a shift", **slider)
    shift_b = widgets.IntSlider(description="b shift", **slider)
    scale = widgets.FloatSlider(description="chroma x", min=0.0, max=2.5, step=0.05, value=1.0,
                                continuous_update=False)
    image = widgets.Image(value=render(0, 0, 1.0), format="png", width=rgb.shape[1] * 2)

    def update(_change=None) -> None:
        image.value = render(shift_a.value, shift_b.value, scale.value)

    for control in (shift_a, shift_b, scale):
        control.observe(update, names="value")
    return widgets.HBox([image, widgets.VBox([shift_a, shift_b, scale])])


# --- training snapshots (koala_lib.train.ColorizationSnapshots) ---------------------------

SNAPSHOT_ROWS = ("gray input", "prediction", "truth")


def read_snapshot(path) -> dict[str, np.ndarray]:
    """One epoch's snapshot PNG as ``ColorizationSnapshots`` writes it (three strips of the
    same portraits stacked: gray input, prediction, truth), split into its strips by name."""
    strips = np.asarray(Image.open(path).convert("RGB"))
    if strips.shape[0] % len(SNAPSHOT_ROWS):
        raise ValueError(f"{path} is not a snapshot: its height {strips.shape[0]} is not "
                         f"{len(SNAPSHOT_ROWS)} equal rows.")
    return dict(zip(SNAPSHOT_ROWS, np.split(strips, len(SNAPSHOT_ROWS)), strict=True))


def snapshot_epoch(path, position: int = 0) -> int:
    """The epoch of a snapshot, from its name (``epoch_007.png`` -> 7); else ``position`` + 1."""
    found = re.search(r"epoch_(\d+)", Path(path).stem)
    return int(found[1]) if found else position + 1


def snapshot_grid(paths: Sequence, max_epochs: int = 5, width: float = 8.0):
    """The training snapshots as one labelled figure: the gray input on top, one row per
    epoch shown, the truth at the bottom (one column per validation portrait).

    With more than ``max_epochs`` snapshots, the first, the last and evenly spaced ones
    between are shown.
    """
    paths = list(paths)
    if not paths:
        raise ValueError("snapshot_grid got no snapshots (was snapshot_images 0?).")
    shown = np.unique(np.linspace(0, len(paths) - 1, min(max_epochs, len(paths))).round())
    first = read_snapshot(paths[0])
    rows = [("gray input", first["gray input"])]
    rows += [(f"epoch {snapshot_epoch(paths[i], int(i))}", read_snapshot(paths[i])["prediction"])
             for i in shown.astype(int)]
    rows.append(("truth", first["truth"]))
    height, strip_width = first["truth"].shape[:2]
    fig, axes = plt.subplots(len(rows), 1, figsize=(width, width * height / strip_width
                                                    * len(rows) * 1.04), squeeze=False)
    for ax, (label, strip) in zip(axes[:, 0], rows, strict=True):
        ax.imshow(strip)
        _label_row(ax, label, horizontal=True)
    return fig


def _jpeg(fig, quality: int = 88) -> bytes:
    """``fig`` as JPEG bytes (a quarter of the PNG's size, as :func:`notebook_style` shows
    figures); the figure is closed: rendered for a widget, never shown by pyplot."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="jpeg", dpi=fig.dpi, bbox_inches="tight", pad_inches=0.05,
                pil_kwargs={"quality": quality})
    plt.close(fig)
    return buffer.getvalue()


def snapshot_slider(paths: Sequence, width: float = 8.0):
    """An ipywidgets slider over the epochs: each position shows that epoch's colorizations
    between the gray input and the truth (:func:`snapshot_grid` for one epoch).

    Returns None when ipywidgets is not installed or there are no snapshots; callers then
    show the static :func:`snapshot_grid`.
    """
    try:
        import ipywidgets as widgets
    except ImportError:
        return None
    paths = list(paths)
    if not paths:
        return None
    epochs = [snapshot_epoch(path, i) for i, path in enumerate(paths)]
    by_epoch = dict(zip(epochs, paths, strict=True))
    rendered: dict[int, bytes] = {}

    def render(epoch: int) -> bytes:
        if epoch not in rendered:
            rendered[epoch] = _jpeg(snapshot_grid([by_epoch[epoch]], width=width))
        return rendered[epoch]

    slider = widgets.SelectionSlider(options=epochs, value=epochs[0], description="epoch",
                                     continuous_update=False)
    image = widgets.Image(value=render(epochs[0]), format="jpeg")

    def update(_change=None) -> None:
        image.value = render(slider.value)

    slider.observe(update, names="value")
    return widgets.VBox([slider, image])
