"""Discrete colour scales of the dual-pol fields and animated small multiples (plotly).

Scales (flat colour per bin, bins ``[levels[i], levels[i + 1])``; values below the first level are drawn
transparent as "no echo / no rain", NaN = missing likewise):

* **ZH (dBZ)**: 5 dBZ steps 5 ... 75, the colours of the US NWS reflectivity display (cyan / blues for weak
  echo, greens, yellow-orange-red for convection, magenta / purple / white above 60 dBZ).
* **ZDR (dB)**: steps of 0.25-0.5 dB from -1 to 5 dB, a blue (negative, vertically oriented ice) - grey (0 dB,
  spheres / dry snow) - green - yellow - red (large oblate drops) ramp as on operational dual-pol displays.
* **KDP (deg/km)**: -1 ... 6 deg/km in steps of 0.25-1, grey around 0 (no liquid water), then green - yellow -
  red - magenta with rising liquid water content.
* **Rain rate (mm/h)**: 0.1, 0.5, 1, 2, 5, 10, 20, 30, 50, 75, 100, 200: quasi-logarithmic bins as on rain-gauge
  and QPE maps (blues for light rain, greens / yellows moderate, reds / magenta heavy); 30 and 50 mm/h are the
  QPE class boundaries of :data:`prediff.dualpol.scores.RAIN_CLASSES`.

Fields are drawn as the *bin index* (so non-uniform bins get equal colour-bar space) with the physical value in
the hover text. This module does not import MindSpore.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class DiscreteScale:
    """A discrete colour scale: ``len(colors) == len(levels) - 1``; bin i is ``[levels[i], levels[i + 1])``."""

    title: str
    unit: str
    levels: tuple[float, ...]
    colors: tuple[str, ...]

    def __post_init__(self):
        if len(self.colors) != len(self.levels) - 1:
            raise ValueError(f"scale {self.title!r}: give one colour per bin ({len(self.levels) - 1})")

    def bin_index(self, values) -> np.ndarray:
        """Bin number of each value (float64, same shape); NaN below the first level or where missing."""
        values = np.asarray(values, dtype=np.float64)
        index = np.digitize(values, self.levels[1:-1]).astype(np.float64)
        return np.where(np.isfinite(values) & (values >= self.levels[0]), index, np.nan)

    def plotly_colorscale(self) -> list[list]:
        """Flat-bin plotly colour scale for z = bin index in [-0.5, n_bins - 0.5]."""
        count = len(self.colors)
        scale = []
        for index, color in enumerate(self.colors):
            scale += [[index / count, color], [(index + 1) / count, color]]
        return scale

    def tick_labels(self) -> list[str]:
        """Colour-bar label of each bin: its lower bound."""
        return [f"{level:g}" for level in self.levels[:-1]]


SCALES: dict[str, DiscreteScale] = {
    "dBZ": DiscreteScale("ZH", "dBZ", tuple(float(v) for v in range(5, 80, 5)),
                         ("#04e9e7", "#019ff4", "#0300f4", "#02fd02", "#01c501", "#008e00", "#fdf802", "#e5bc00",
                          "#fd9500", "#fd0000", "#d40000", "#bc0000", "#f800fd", "#9854c6")),
    "ZDR": DiscreteScale("ZDR", "dB", (-1.0, -0.5, 0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0),
                         ("#2c3e9e", "#6f8fd0", "#b4b4b4", "#8fd4a5", "#3fb35b", "#1b7f33", "#d9e84a", "#fcd33a",
                          "#f79a2b", "#e8502a", "#b3172b", "#7a0a3d")),
    "KDP": DiscreteScale("KDP", "deg/km", (-1.0, -0.5, 0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0),
                         ("#6b6b9e", "#a8a8c8", "#d0d0d0", "#a6dba0", "#5aae61", "#1b7837", "#fee08b", "#fdae61",
                          "#f46d43", "#d73027", "#a50026", "#c51b7d")),
    "rain": DiscreteScale("Rain rate", "mm/h", (0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 50.0, 75.0, 100.0, 200.0),
                          ("#c6dbef", "#9ecae1", "#4292c6", "#2171b5", "#41ab5d", "#a1d99b", "#fee391", "#fe9929",
                           "#e31a1c", "#a50f15", "#c51b8a")),
}
#: Background of the map panels (what "no echo" and missing pixels show).
PANEL_BACKGROUND = "#f4f4f4"
FRAME_DURATION_MS = 500


@dataclasses.dataclass(frozen=True)
class FieldPanel:
    """One panel of :func:`small_multiples`.

    Attributes
    ----------
    title : panel title.
    values : (T, H, W) physical values in the scale's unit (NaN = missing); T = 1 for a still panel.
    scale : key of :data:`SCALES` (``"dBZ"``, ``"ZDR"``, ``"KDP"``, ``"rain"``).
    row, col : 1-based position in the grid of panels.
    """

    title: str
    values: np.ndarray
    scale: str
    row: int = 1
    col: int = 1


def _heatmap_arguments(panel: FieldPanel, index: int) -> dict:
    frame = panel.values[min(index, len(panel.values) - 1)]
    scale = SCALES[panel.scale]
    # hover values rounded so the JSON sent to the browser stays small
    return {"z": scale.bin_index(frame), "customdata": np.round(frame.astype(np.float64), 2)}


def small_multiples(panels: Sequence[FieldPanel], times: Sequence[str] | None = None, title: str = "",
                    pixel_km: float = 1.0, panel_height: int = 260):
    """A grid of fields with one colour bar per scale and a shared time slider / play button.

    Parameters
    ----------
    panels : the panels; every panel of a scale shares that scale's colour bar (placed by its first panel's row).
    times : (T,) slider labels, T = the longest panel; panels with fewer frames hold their last one.
    title : figure title.
    pixel_km : pixel size in km (axes in km from the grid's lower-left corner).
    panel_height : height of one row of panels in pixels.

    Returns
    -------
    plotly.graph_objects.Figure with frames (when T > 1), a slider and play / pause buttons.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    if not panels:
        raise ValueError("small_multiples needs at least one panel")
    panels = [dataclasses.replace(p, values=np.asarray(p.values, dtype=np.float32)) for p in panels]
    for panel in panels:
        if panel.values.ndim != 3 or panel.scale not in SCALES:
            raise ValueError(f"panel {panel.title!r}: values must be (T, H, W) and scale one of {', '.join(SCALES)}")
    rows = max(p.row for p in panels)
    cols = max(p.col for p in panels)
    steps = max(len(p.values) for p in panels)
    labels = list(times) if times is not None else [f"frame {k}" for k in range(steps)]
    if len(labels) != steps:
        raise ValueError(f"{len(labels)} time labels for {steps} frames")
    titles = [""] * (rows * cols)
    for panel in panels:
        titles[(panel.row - 1) * cols + panel.col - 1] = panel.title
    figure = make_subplots(rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.03,
                           vertical_spacing=0.12 / rows * 2 if rows > 1 else 0.0)
    axis_of = {scale: f"coloraxis{'' if k == 0 else k + 1}"
               for k, scale in enumerate(dict.fromkeys(p.scale for p in panels))}
    size = panels[0].values.shape[-1]
    coordinates = (np.arange(size) + 0.5) * pixel_km
    for panel in panels:
        scale = SCALES[panel.scale]
        figure.add_trace(go.Heatmap(x=coordinates, y=coordinates, coloraxis=axis_of[panel.scale],
                                    hovertemplate=f"x %{{x:.0f}} km, y %{{y:.0f}} km<br>%{{customdata}} {scale.unit}"
                                                  "<extra></extra>", **_heatmap_arguments(panel, 0)),
                         row=panel.row, col=panel.col)
    if steps > 1:
        figure.frames = [go.Frame(name=label, traces=list(range(len(panels))),
                                  data=[go.Heatmap(**_heatmap_arguments(p, k)) for p in panels])
                         for k, label in enumerate(labels)]
    figure.update_xaxes(showgrid=False, zeroline=False, constrain="domain", showticklabels=False)
    figure.update_yaxes(showgrid=False, zeroline=False, constrain="domain", showticklabels=False)
    for k in range(1, rows * cols + 1):
        figure.update_yaxes(scaleanchor=f"x{'' if k == 1 else k}", scaleratio=1, row=(k - 1) // cols + 1,
                            col=(k - 1) % cols + 1)
    height = panel_height * rows + (150 if steps > 1 else 70)
    margin = {"l": 20, "r": 20, "t": 60, "b": 110 if steps > 1 else 20}
    layout = {"title": {"text": title}, "height": height, "margin": margin, "plot_bgcolor": PANEL_BACKGROUND}
    for scale_key, axis in axis_of.items():
        scale = SCALES[scale_key]
        first_row = min(p.row for p in panels if p.scale == scale_key)
        count = len(scale.colors)
        layout[axis] = {"colorscale": scale.plotly_colorscale(), "cmin": -0.5, "cmax": count - 0.5,
                        "colorbar": {"title": {"text": f"{scale.title} ({scale.unit})", "side": "right"},
                                     "tickvals": list(range(count)), "ticktext": scale.tick_labels(),
                                     "len": 0.9 / rows, "y": 1.0 - (first_row - 0.5) / rows, "yanchor": "middle",
                                     "x": 1.01, "thickness": 14}}
    if steps > 1:
        below = -60.0 / max(height - margin["t"] - margin["b"], 100)
        play = {"label": "▶ Play", "method": "animate",
                "args": [None, {"frame": {"duration": FRAME_DURATION_MS, "redraw": True}, "fromcurrent": True,
                                "transition": {"duration": 0}}]}
        pause = {"label": "❚❚ Pause", "method": "animate",
                 "args": [[None], {"frame": {"duration": 0, "redraw": False}, "mode": "immediate",
                                   "transition": {"duration": 0}}]}
        layout["updatemenus"] = [{"type": "buttons", "direction": "left", "showactive": False, "x": 0.0,
                                  "y": below, "xanchor": "left", "yanchor": "top", "buttons": [play, pause]}]
        layout["sliders"] = [{"active": 0, "x": 0.18, "len": 0.8, "y": below, "yanchor": "top",
                              "currentvalue": {"prefix": "", "xanchor": "right"},
                              "steps": [{"label": label, "method": "animate",
                                         "args": [[label], {"frame": {"duration": 0, "redraw": True},
                                                            "mode": "immediate", "transition": {"duration": 0}}]}
                                        for label in labels]}]
    figure.update_layout(**layout)
    return figure
