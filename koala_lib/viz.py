"""Figures: one ``save_fig`` for every notebook, the Lab channel figure, comparison grids."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from koala_lib import color
from koala_lib.environment import figures_dir

# L used to render the a and b channels in colour: bright enough that hues are visible.
CHANNEL_RENDER_L = 70.0


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
    """A grid with one column per entry of ``columns`` (title -> images), one row per image."""
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
                axes[row, col].set_title(title, fontsize=10)
    if row_labels is not None:
        if len(row_labels) != n_rows:
            raise ValueError(f"{len(row_labels)} row labels for {n_rows} rows.")
        for row, label in enumerate(row_labels):
            axes[row, 0].axis("on")
            axes[row, 0].set_xticks([])
            axes[row, 0].set_yticks([])
            axes[row, 0].set_ylabel(label, fontsize=9)
    return fig


def comparison_grid(gray, predicted, truth, row_labels: Sequence[str] | None = None,
                    predicted_title: str = "Prediction"):
    """Gray input / prediction / ground truth, one row per image (RGB images or batches)."""
    return image_grid(
        {"Gray input": gray, predicted_title: predicted, "Ground truth": truth},
        row_labels=row_labels,
    )


def ab_shift_explorer(rgb, max_shift: int = 60):
    """An ipywidgets explorer: sliders shift a and b and scale chroma on ``rgb``.

    Returns None when ipywidgets is not installed; callers then show a static figure.
    """
    try:
        import ipywidgets as widgets
    except ImportError:
        return None
    import io

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
