"""Export a VIL sequence as an animated GIF or a PNG strip (matplotlib + imageio), returned as bytes.

Frames are drawn north-up (row 0 of the arrays is the southern edge, :mod:`prediff.data.geo`) with the SEVIR
colour scale; with a grid, the offline borders are drawn on top and the axes are in projected kilometres.
"""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np

from prediff.data.geo import Grid
from prediff.viz.basemap import basemap_for_grid
from prediff.viz.colormap import VIL_LEVELS, mask_missing, matplotlib_vil_cmap

_BORDER_COLOR = {"lakes": "#6a9fd8", "state_borders": "#dddddd", "country_borders": "white",
                 "coastline": "white"}


def _check_frames(frames) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim == 2:
        frames = frames[None]
    if frames.ndim != 3 or frames.shape[0] == 0:
        raise ValueError(f"frames must be (T, H, W) VIL pixels with T >= 1, got shape {frames.shape}")
    return frames


def _draw_panel(axes, frame: np.ndarray, grid: Grid | None, label: str | None):
    cmap, norm = matplotlib_vil_cmap("grey")
    extent = None if grid is None else tuple(value / 1000.0 for value in grid.extent())
    image = axes.imshow(np.ma.masked_invalid(mask_missing(frame)), cmap=cmap, norm=norm, origin="lower",
                        extent=extent, interpolation="nearest")
    if grid is not None:
        for layer, (x, y) in basemap_for_grid(grid).items():
            if x.size:
                axes.plot(x / 1000.0, y / 1000.0, color=_BORDER_COLOR[layer],
                          linewidth=0.5 if layer == "state_borders" else 0.9)
        axes.set_xlim(extent[0], extent[1])
        axes.set_ylim(extent[2], extent[3])
    axes.set_xticks([])
    axes.set_yticks([])
    if label:
        axes.set_title(label, fontsize=9)
    return image


def _figure_rgb(figure) -> np.ndarray:
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()


def vil_gif(frames, labels: Sequence[str] | None = None, grid: Grid | None = None, fps: float = 4.0,
            size_inches: float = 4.0, dpi: int = 80) -> bytes:
    """Animated GIF of a VIL sequence.

    Parameters
    ----------
    frames : (T, H, W) VIL pixel 0-255; 255 or NaN = missing (drawn light grey).
    labels : (T,) per-frame titles (e.g. times or lead times); none by default.
    grid : georeferencing; when given, borders are drawn and the axes are in projected km.
    fps : frames per second of the animation (loops forever).
    size_inches, dpi : size of each frame: ``size_inches * dpi`` pixels square.

    Returns
    -------
    bytes of a GIF file.
    """
    import imageio.v3 as iio
    from matplotlib.figure import Figure

    frames = _check_frames(frames)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    figure = Figure(figsize=(size_inches, size_inches), dpi=dpi)
    FigureCanvasAgg(figure)
    axes = figure.add_axes([0.02, 0.02, 0.96, 0.9 if labels is not None else 0.96])
    image = _draw_panel(axes, frames[0], grid, labels[0] if labels is not None else None)
    rendered = []
    for index, frame in enumerate(frames):
        image.set_data(np.ma.masked_invalid(mask_missing(frame)))
        if labels is not None:
            axes.set_title(str(labels[index]), fontsize=9)
        rendered.append(_figure_rgb(figure))
    buffer = io.BytesIO()
    iio.imwrite(buffer, np.stack(rendered), extension=".gif", duration=1000.0 / fps, loop=0)
    return buffer.getvalue()


def vil_strip_png(frames, labels: Sequence[str] | None = None, grid: Grid | None = None, columns: int | None = None,
                  panel_inches: float = 2.2, dpi: int = 100, colorbar: bool = True) -> bytes:
    """PNG of a VIL sequence as a strip (or grid) of panels with the SEVIR colour bar.

    Parameters
    ----------
    frames : (T, H, W) VIL pixel 0-255; 255 or NaN = missing (drawn light grey).
    labels : (T,) panel titles.
    grid : georeferencing; when given, borders are drawn.
    columns : panels per row (default: all T in one row).
    panel_inches, dpi : size of each panel.
    colorbar : add the VIL colour bar (VIL pixel levels) on the right.

    Returns
    -------
    bytes of a PNG file.
    """
    from matplotlib.figure import Figure

    frames = _check_frames(frames)
    count = len(frames)
    columns = count if columns is None else max(1, min(columns, count))
    rows = int(np.ceil(count / columns))
    width = panel_inches * columns + (0.9 if colorbar else 0.0)
    figure = Figure(figsize=(width, panel_inches * rows + (0.3 if labels is not None else 0.0)), dpi=dpi,
                    facecolor="white")
    axes_grid = figure.subplots(rows, columns, squeeze=False)
    image = None
    for index, axes in enumerate(axes_grid.ravel()):
        if index >= count:
            axes.set_axis_off()
            continue
        image = _draw_panel(axes, frames[index], grid, labels[index] if labels is not None else None)
    figure.subplots_adjust(left=0.01, right=(1 - 0.9 / width) if colorbar else 0.99, bottom=0.02, top=0.9,
                           wspace=0.05, hspace=0.15)
    if colorbar and image is not None:
        bar_axes = figure.add_axes([1 - 0.75 / width, 0.1, 0.15 / width, 0.75])
        bar = figure.colorbar(image, cax=bar_axes, ticks=list(VIL_LEVELS[:-1]))
        bar.set_label("VIL (pixel)", fontsize=8)
        bar.ax.tick_params(labelsize=7)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", facecolor="white")
    return buffer.getvalue()

