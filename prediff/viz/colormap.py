"""The SEVIR VIL colour scale: one definition, rendered for plotly and matplotlib.

The levels and colours are those of the SEVIR tutorial's ``vil`` colormap (Veillette et al. 2020): ten
bins between the VIL pixel boundaries 0, 16, 31, 59, 74, 100, 133, 160, 181, 219, 255, each a flat colour
(grey for "trace", four greens, yellow, two oranges, dark red, magenta). The tutorial's extra black entry
is the colour of *missing* pixels; here missing (pixel 255, or NaN on a float field) is drawn transparent by
default so the map underneath shows through, or a chosen grey.

The published scores' thresholds (16, 74, 133, 160, 181, 219; :data:`prediff.data.vil.SEVIR_THRESHOLDS`)
are all bin boundaries, so "above threshold" always means "a warmer colour than ...".
"""

from __future__ import annotations

import numpy as np

from prediff.data.layout import MISSING_PIXEL
from prediff.data.vil import SEVIR_THRESHOLDS, vil_pixels_to_kg_m2

#: Bin boundaries of the SEVIR VIL colour scale, VIL pixel 0-255.
VIL_LEVELS: tuple[int, ...] = (0, 16, 31, 59, 74, 100, 133, 160, 181, 219, 255)

#: RGB colour (0-1 floats) of each bin ``[VIL_LEVELS[i], VIL_LEVELS[i + 1])``, from the SEVIR tutorial.
VIL_COLORS: tuple[tuple[float, float, float], ...] = (
    (0.30196078431372547, 0.30196078431372547, 0.30196078431372547),
    (0.1568627450980392, 0.7450980392156863, 0.1568627450980392),
    (0.09803921568627451, 0.5882352941176471, 0.09803921568627451),
    (0.0392156862745098, 0.4117647058823529, 0.0392156862745098),
    (0.0392156862745098, 0.29411764705882354, 0.0392156862745098),
    (0.9607843137254902, 0.9607843137254902, 0.0),
    (0.9294117647058824, 0.6745098039215687, 0.0),
    (0.9411764705882353, 0.43137254901960786, 0.0),
    (0.6274509803921569, 0.0, 0.0),
    (0.9058823529411765, 0.0, 1.0),
)

#: Colour of missing pixels when they are not drawn transparent (a light grey, distinct from the trace bin).
MISSING_COLOR_RGB: tuple[float, float, float] = (0.85, 0.85, 0.85)


def _hex(rgb: tuple[float, float, float]) -> str:
    return "#" + "".join(f"{int(round(channel * 255)):02x}" for channel in rgb)


def vil_level_labels(unit: str = "pixel") -> list[str]:
    """Human-readable label of every colour bin.

    Parameters
    ----------
    unit : ``"pixel"`` for VIL pixel ranges ("16-31"), ``"kg m-2"`` for the decoded physical ranges.

    Returns
    -------
    list of 10 str, one per bin of :data:`VIL_LEVELS`.
    """
    if unit not in ("pixel", "kg m-2"):
        raise ValueError(f"unit must be 'pixel' or 'kg m-2', got {unit!r}")
    if unit == "pixel":
        return [f"{low}-{high}" for low, high in zip(VIL_LEVELS[:-1], VIL_LEVELS[1:])]
    # the top boundary 255 is the missing code, so the last bin ends at the largest valid pixel
    edges = vil_pixels_to_kg_m2(np.array(VIL_LEVELS[:-1] + (MISSING_PIXEL - 1,), dtype=np.float64))
    return [f"{low:.2f}-{high:.2f}" for low, high in zip(edges[:-1], edges[1:])]


def plotly_vil_colorscale() -> list[list]:
    """Discrete plotly colorscale of the SEVIR VIL levels, for uint8 VIL pixels with ``zmin=0, zmax=255``.

    Every bin becomes a flat band (two stops with the same colour), so plotly does not blend neighbouring
    colours. The top half-pixel band, where only the missing code 255 falls, is fully transparent; this lets
    maps send compact uint8 pixels instead of float32 with NaN (float NaN cells are transparent too).

    Returns
    -------
    list of ``[position in 0-1, colour]`` pairs, 22 stops.
    """
    scale = []
    top = float(MISSING_PIXEL)
    missing_edge = (MISSING_PIXEL - 0.5) / top
    for (low, high), rgb in zip(zip(VIL_LEVELS[:-1], VIL_LEVELS[1:]), VIL_COLORS):
        scale.append([low / top, _hex(rgb)])
        scale.append([min(high / top, missing_edge), _hex(rgb)])
    scale.append([missing_edge, "rgba(0,0,0,0)"])
    scale.append([1.0, "rgba(0,0,0,0)"])
    return scale


def to_display_pixels(vil_pixels) -> np.ndarray:
    """VIL pixels as uint8 for :func:`plotly_vil_colorscale`: NaN -> 255 (missing), others rounded and clipped.

    Parameters
    ----------
    vil_pixels : array_like, any shape, VIL pixel 0-255 (uint8 or float); NaN or 255 = missing.

    Returns
    -------
    np.ndarray, same shape, uint8 VIL pixel, 255 = missing.
    """
    values = np.asarray(vil_pixels)
    if values.dtype == np.uint8:
        return values
    values = values.astype(np.float32)
    rounded = np.clip(np.rint(np.nan_to_num(values, nan=MISSING_PIXEL)), 0, MISSING_PIXEL)
    return rounded.astype(np.uint8)


def plotly_vil_colorbar(title: str = "VIL") -> dict:
    """Plotly colorbar settings for ``zmin=0, zmax=255``: ticks at 0, the score thresholds (16, 74, 133, 160,
    181, 219 VIL pixel, all level boundaries) and the top valid pixel 254; the narrow low bins get no label of
    their own so the labels never overlap."""
    ticks = [0, *SEVIR_THRESHOLDS, MISSING_PIXEL - 1]
    return {"title": {"text": title}, "tickvals": ticks, "ticktext": [str(v) for v in ticks]}


def matplotlib_vil_cmap(missing: str = "transparent"):
    """Matplotlib ``ListedColormap`` + ``BoundaryNorm`` of the SEVIR VIL levels.

    Parameters
    ----------
    missing : ``"transparent"`` (default) or ``"grey"``: how masked values (mask the VIL pixel 255 / NaN
        with :func:`mask_missing`) are drawn.

    Returns
    -------
    (matplotlib.colors.ListedColormap, matplotlib.colors.BoundaryNorm) for VIL pixel 0-255 data.
    """
    from matplotlib.colors import BoundaryNorm, ListedColormap

    if missing not in ("transparent", "grey"):
        raise ValueError(f"missing must be 'transparent' or 'grey', got {missing!r}")
    cmap = ListedColormap(list(VIL_COLORS), name="sevir_vil").with_extremes(
        bad=(0.0, 0.0, 0.0, 0.0) if missing == "transparent" else MISSING_COLOR_RGB,
        under=VIL_COLORS[0], over=VIL_COLORS[-1])
    return cmap, BoundaryNorm(list(VIL_LEVELS), cmap.N)


def mask_missing(vil_pixels) -> np.ndarray:
    """VIL pixels as float32 with missing set to NaN.

    Parameters
    ----------
    vil_pixels : array_like, any shape, VIL pixel 0-255 (uint8 or float); 255 or NaN = missing.

    Returns
    -------
    np.ndarray, same shape, float32 VIL pixel, NaN where missing.
    """
    values = np.asarray(vil_pixels, dtype=np.float32)
    return np.where(values == MISSING_PIXEL, np.float32(np.nan), values)


def vil_to_rgba(vil_pixels, missing: str = "transparent") -> np.ndarray:
    """Colour VIL pixels with the SEVIR scale.

    Parameters
    ----------
    vil_pixels : array_like (..., H, W), VIL pixel 0-255; 255 or NaN = missing.
    missing : ``"transparent"`` (alpha 0) or ``"grey"`` (:data:`MISSING_COLOR_RGB`, opaque).

    Returns
    -------
    np.ndarray (..., H, W, 4) uint8 RGBA.
    """
    cmap, norm = matplotlib_vil_cmap(missing)
    masked = np.ma.masked_invalid(mask_missing(vil_pixels))
    return cmap(norm(masked), bytes=True)
