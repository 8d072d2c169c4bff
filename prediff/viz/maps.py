"""Interactive georeferenced maps (plotly): animated VIL, synchronized multi-panel forecasts, probability of
exceedance, and the locations of catalog events.

All maps are drawn in the projected x/y of the data's :class:`prediff.data.geo.Grid` (kilometres on the axes,
equal aspect), with the offline Natural Earth outlines of :mod:`prediff.viz.basemap`. Hovering a pixel shows
its latitude / longitude and value (VIL pixel and kg m^-2, or probability). Nothing here needs internet:
plotly's own geo maps fetch their outlines from a CDN, so they are not used.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, Sequence

import numpy as np
import pandas as pd

from prediff.data.geo import Grid, laea_proj_for_center, project, unproject
from prediff.data.layout import MISSING_PIXEL
from prediff.data.vil import vil_pixels_to_kg_m2
from prediff.viz.basemap import basemap_for_grid, basemap_lines
from prediff.viz.colormap import plotly_vil_colorbar, plotly_vil_colorscale, to_display_pixels

#: Largest side (pixels) drawn; larger fields are shown as block maxima (SEVIR's 384 -> 192 of 2 x 2 blocks).
MAX_DISPLAY_PIXELS = 256

#: Line styles of the basemap layers. Light lines stay visible on SEVIR's dark-grey "trace" colour.
BASEMAP_STYLE: dict[str, dict] = {
    "lakes": {"color": "rgba(120,170,230,0.9)", "width": 0.8},
    "state_borders": {"color": "rgba(235,235,235,0.75)", "width": 0.7},
    "country_borders": {"color": "rgba(255,255,255,0.95)", "width": 1.3},
    "coastline": {"color": "rgba(255,255,255,0.95)", "width": 1.3},
}
#: Background where pixels are missing (outside radar coverage).
MISSING_BACKGROUND = "#a8a8a8"
PROBABILITY_COLORSCALE = "Blues"
FRAME_DURATION_MS = 400
#: Map panels per row of :func:`multi_panel_map` (more panels wrap onto further rows, so each map stays large).
MAX_MAP_COLUMNS = 3
#: Height in pixels of one row of map panels.
MAP_ROW_HEIGHT = 380


@dataclasses.dataclass
class MapPanel:
    """One panel of a synchronized multi-panel animation.

    Attributes
    ----------
    title : panel heading, e.g. "Context", "Ensemble mean", "Observed".
    values : (T, H, W) field on the shared grid. ``kind="vil"``: VIL pixel 0-255 (uint8 or float), 255 or
        NaN = missing. ``kind="probability"``: float in [0, 1], NaN = missing.
    kind : "vil" or "probability".
    label : what the probability is of, for the hover text, e.g. "P(VIL >= 133)".
    """

    title: str
    values: np.ndarray
    kind: Literal["vil", "probability"] = "vil"
    label: str = "probability"

    def __post_init__(self):
        self.values = np.asarray(self.values)
        if self.values.ndim == 2:
            self.values = self.values[None]
        if self.values.ndim != 3:
            raise ValueError(f"panel {self.title!r}: values must be (T, H, W), got shape {self.values.shape}")
        if self.kind not in ("vil", "probability"):
            raise ValueError(f"panel {self.title!r}: kind must be 'vil' or 'probability', got {self.kind!r}")


def _display_stride(grid: Grid) -> int:
    return max(1, int(np.ceil(max(grid.shape) / MAX_DISPLAY_PIXELS)))


def _time_labels(times: Sequence | None, count: int) -> list[str]:
    """Slider labels: strings as given; datetimes as "HH:MM UTC" when all fall on one day, else with the date."""
    if times is None:
        return [f"frame {index}" for index in range(count)]
    values = list(times)[:count]
    if values and not any(isinstance(value, str) for value in values):
        try:
            stamps = pd.to_datetime(pd.Series(values))
        except (TypeError, ValueError):
            stamps = None
        if stamps is not None and not stamps.isna().any():
            same_day = stamps.dt.normalize().nunique() == 1
            labels = list(stamps.dt.strftime("%H:%M UTC" if same_day else "%m-%d %H:%M UTC"))
            return labels + [f"frame {index}" for index in range(len(labels), count)]
    labels = [str(value) for value in values]
    return labels + [f"frame {index}" for index in range(len(labels), count)]


def _block_mean_1d(values: np.ndarray, stride: int) -> np.ndarray:
    usable = values.size - values.size % stride
    return values[:usable].reshape(-1, stride).mean(axis=1)


def _block_max(field: np.ndarray, stride: int, kind: str) -> np.ndarray:
    """Display reduction of an (H, W) field: the maximum over stride x stride blocks (storm peaks stay visible);
    missing pixels are ignored unless a whole block is missing. Rows / columns beyond the last whole block are
    dropped."""
    if stride == 1:
        return field
    height = field.shape[0] - field.shape[0] % stride
    width = field.shape[1] - field.shape[1] % stride
    blocks = field[:height, :width].reshape(height // stride, stride, width // stride, stride)
    if kind == "vil":
        pixels = to_display_pixels(blocks).astype(np.int16)
        peak = np.where(pixels == MISSING_PIXEL, -1, pixels).max(axis=(1, 3))
        return np.where(peak < 0, MISSING_PIXEL, peak).astype(np.uint8)
    values = np.asarray(blocks, dtype=np.float32)
    peak = np.where(np.isnan(values), -np.inf, values).max(axis=(1, 3))
    return np.where(np.isneginf(peak), np.nan, peak).astype(np.float32)


def _latlon(grid: Grid, stride: int) -> np.ndarray:
    """(H', W', 2) float32 latitude and longitude (degrees, east / north positive) of the displayed
    (block-centre) pixels."""
    x, y = np.meshgrid(_block_mean_1d(grid.x, stride), _block_mean_1d(grid.y, stride))
    lon, lat = (np.asarray(v, dtype=np.float32) for v in unproject(grid.proj, x, y))
    return np.stack([lat, lon], axis=-1)


def _latlon_text(latlon: np.ndarray) -> np.ndarray:
    """(H', W') str "lat°N, lon°E" of :func:`_latlon`'s coordinates, shown on hover.

    Animated maps keep this one text array per panel (their frames change only the values); a numeric
    latitude / longitude in every frame's customdata would double the data sent to the browser.
    """
    lat, lon = latlon[..., 0], latlon[..., 1]
    ns = np.where(lat >= 0, "N", "S")
    ew = np.where(lon >= 0, "E", "W")
    return np.char.add(np.char.add(np.char.add(np.char.mod("%.2f°", np.abs(lat)), ns),
                                   np.char.add(", ", np.char.mod("%.2f°", np.abs(lon)))), ew)


def _panel_frame(panel: MapPanel, index: int, stride: int) -> dict:
    """Heatmap attributes of one frame of one panel (frames past the panel's end repeat its last one); VIL
    panels carry the frame's VIL in kg m^-2 (float32, NaN where missing) as hover data."""
    field = _block_max(panel.values[min(index, len(panel.values) - 1)], stride, panel.kind)
    if panel.kind == "vil":
        z = to_display_pixels(field)
        return {"z": z, "customdata": vil_pixels_to_kg_m2(z).astype(np.float32)}
    return {"z": np.asarray(field, dtype=np.float32)}


def _heatmap(panel: MapPanel, index: int, stride: int, grid: Grid, latlon_text: np.ndarray):
    import plotly.graph_objects as go

    x_km = _block_mean_1d(grid.x, stride) / 1000.0
    y_km = _block_mean_1d(grid.y, stride) / 1000.0
    if panel.kind == "vil":
        hover = ("%{text}<br>VIL pixel %{z} = %{customdata:.2f} kg m<sup>-2</sup>"
                 "<extra>" + panel.title + "</extra>")
        axis = "coloraxis"
    else:
        hover = "%{text}<br>" + panel.label + " = %{z:.2f}<extra>" + panel.title + "</extra>"
        axis = "coloraxis2"
    return go.Heatmap(x=x_km, y=y_km, text=latlon_text, hovertemplate=hover, coloraxis=axis,
                      **_panel_frame(panel, index, stride))


def _basemap_traces(grid: Grid) -> list:
    import plotly.graph_objects as go

    traces = []
    for layer, (x, y) in basemap_for_grid(grid).items():
        if x.size == 0:
            continue
        style = BASEMAP_STYLE[layer]
        traces.append(go.Scatter(x=x / 1000.0, y=y / 1000.0, mode="lines", line=style, hoverinfo="skip",
                                 showlegend=False, name=layer.replace("_", " ")))
    return traces


def _animation_controls(labels: list[str], below: float) -> tuple[list, list]:
    """Play / pause buttons and the time slider, ``below`` (paper units, < 0) under the plot area so they clear
    the x-axis title."""
    play = {"label": "▶ Play", "method": "animate",
            "args": [None, {"frame": {"duration": FRAME_DURATION_MS, "redraw": True}, "fromcurrent": True,
                            "transition": {"duration": 0}}]}
    pause = {"label": "❚❚ Pause", "method": "animate",
             "args": [[None], {"frame": {"duration": 0, "redraw": False}, "mode": "immediate",
                               "transition": {"duration": 0}}]}
    menus = [{"type": "buttons", "direction": "left", "showactive": False, "x": 0.0, "y": below,
              "xanchor": "left", "yanchor": "top", "pad": {"t": 30, "r": 10}, "buttons": [play, pause]}]
    steps = [{"label": label, "method": "animate",
              "args": [[label], {"frame": {"duration": 0, "redraw": True}, "mode": "immediate",
                                 "transition": {"duration": 0}}]}
             for label in labels]
    sliders = [{"active": 0, "steps": steps, "x": 0.22, "len": 0.78, "y": below + 0.02, "yanchor": "top",
                "currentvalue": {"prefix": "", "xanchor": "right", "font": {"size": 13}}, "pad": {"t": 30}}]
    return menus, sliders


def multi_panel_map(panels: Sequence[MapPanel], grid: Grid, times: Sequence | None = None, title: str = "",
                    threshold_label: str = "probability", height: int | None = None):
    """Synchronized animation of several fields on one grid, side by side (context | forecast | observed ...).

    Every panel shows frame ``k`` at slider position ``k``; a panel with fewer frames holds its last one
    (e.g. the last context frame next to the forecast lead times). Zoom and pan are linked across panels.

    Parameters
    ----------
    panels : the panels, left to right; all (T_i, H, W) on ``grid``.
    grid : georeferencing of the fields (row 0 = south).
    times : (T,) slider labels: datetimes (datetime64 / Timestamp, shown as UTC) or strings such as
        "+30 min"; default "frame k". T = the longest panel.
    title : figure title.
    threshold_label : colour-bar title of probability panels, e.g. "P(VIL ≥ 133)".
    height : figure height in pixels (default: from the number of panels).

    Returns
    -------
    plotly.graph_objects.Figure with frames, a slider and play / pause buttons.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    if not panels:
        raise ValueError("multi_panel_map needs at least one panel")
    for panel in panels:
        if panel.values.shape[1:] != grid.shape:
            raise ValueError(f"panel {panel.title!r} has shape {panel.values.shape[1:]}, grid is {grid.shape}")
    count = len(panels)
    columns = min(count, MAX_MAP_COLUMNS)
    rows = -(-count // columns)
    steps = max(len(panel.values) for panel in panels)
    stride = _display_stride(grid)
    latlon_text = _latlon_text(_latlon(grid, stride))
    outline = _basemap_traces(grid)
    figure = make_subplots(rows=rows, cols=columns, subplot_titles=[panel.title for panel in panels],
                           horizontal_spacing=0.03 if columns > 1 else 0.0, vertical_spacing=0.08)
    heatmap_indices = []
    for index, panel in enumerate(panels):
        cell = {"row": index // columns + 1, "col": index % columns + 1}
        heatmap_indices.append(len(figure.data))
        figure.add_trace(_heatmap(panel, 0, stride, grid, latlon_text), **cell)
        for trace in outline:
            figure.add_trace(trace, **cell)
    labels = _time_labels(times, steps)
    figure.frames = [
        go.Frame(name=labels[index], traces=heatmap_indices,
                 data=[go.Heatmap(**_panel_frame(panel, index, stride)) for panel in panels])
        for index in range(steps)
    ]
    x_min, x_max, y_min, y_max = (value / 1000.0 for value in grid.extent())
    for index in range(count):
        row, column = index // columns + 1, index % columns + 1
        suffix = "" if index == 0 else str(index + 1)
        figure.update_xaxes(range=[x_min, x_max], constrain="domain", showgrid=False, zeroline=False,
                            title_text="x (km)" if (row, column) == (rows, 1) else None, row=row, col=column,
                            matches=None if index == 0 else "x")
        figure.update_yaxes(range=[y_min, y_max], showgrid=False, zeroline=False, scaleanchor="x" + suffix,
                            scaleratio=1, constrain="domain", title_text="y (km)" if column == 1 else None,
                            showticklabels=column == 1, row=row, col=column)
    height = height or (560 if count == 1 else 120 + MAP_ROW_HEIGHT * rows)
    margin = {"l": 60, "r": 20, "t": 60, "b": 130 if steps > 1 else 40}
    # 40 px under the plot area leaves room for the tick labels and the x-axis title
    below = -40.0 / max(height - margin["t"] - margin["b"], 100)
    menus, sliders = (_animation_controls(labels, below) if steps > 1 else ([], []))
    has_vil = any(panel.kind == "vil" for panel in panels)
    has_probability = any(panel.kind == "probability" for panel in panels)
    layout = {
        "title": {"text": title}, "height": height, "plot_bgcolor": MISSING_BACKGROUND, "margin": margin,
        "updatemenus": menus, "sliders": sliders,
    }
    # colour-bar titles run along the bars, so two bars side by side never overlap
    if has_vil:
        vil_bar = plotly_vil_colorbar("VIL (pixel)")
        vil_bar["title"]["side"] = "right"
        layout["coloraxis"] = {"colorscale": plotly_vil_colorscale(), "cmin": 0, "cmax": 255,
                               "colorbar": {**vil_bar, "x": 1.0, "len": 0.9, "thickness": 14}}
    if has_probability:
        layout["coloraxis2"] = {"colorscale": PROBABILITY_COLORSCALE, "cmin": 0.0, "cmax": 1.0,
                                "colorbar": {"title": {"text": threshold_label, "side": "right"},
                                             "x": 1.09 if has_vil else 1.0, "len": 0.9, "thickness": 14}}
    figure.update_layout(**layout)
    return figure


def vil_map(frames, grid: Grid, times: Sequence | None = None, title: str = "", height: int | None = None):
    """Animated map of one VIL sequence with borders, hover values and the SEVIR colour scale.

    Parameters
    ----------
    frames : (T, H, W) VIL pixel 0-255 (uint8 or float); 255 or NaN = missing (drawn transparent over a
        grey background). A single (H, W) frame gives a static map.
    grid : georeferencing of the frames (row 0 = south).
    times : (T,) frame times (datetime64 / Timestamp, shown as "HH:MM UTC", with the date when they span
        several days) or labels; default "frame k".
    title : figure title.
    height : figure height in pixels.

    Returns
    -------
    plotly.graph_objects.Figure with one frame per time step, a slider and play / pause buttons.
    """
    return multi_panel_map([MapPanel(title="", values=frames)], grid, times=times, title=title, height=height)


def probability_map(probability, grid: Grid, threshold_label: str, times: Sequence | None = None,
                    title: str = "", height: int | None = None):
    """Map of a probability of exceedance (0-1 colour scale), static or animated over lead times.

    Parameters
    ----------
    probability : (H, W) or (T, H, W) float in [0, 1], e.g. the fraction of ensemble members with
        VIL >= threshold; NaN = missing.
    grid : georeferencing (row 0 = south).
    threshold_label : what the probability is of, e.g. "P(VIL ≥ 133)" (hover text and colour-bar title).
    times : (T,) lead-time labels or datetimes.
    title : figure title.
    height : figure height in pixels.

    Returns
    -------
    plotly.graph_objects.Figure.
    """
    values = np.asarray(probability, dtype=np.float32)
    finite = values[np.isfinite(values)]
    if finite.size and (finite.min() < 0.0 or finite.max() > 1.0):
        raise ValueError(f"probabilities must lie in [0, 1], got {finite.min():.3g} .. {finite.max():.3g}")
    panel = MapPanel(title="", values=values, kind="probability", label=threshold_label)
    return multi_panel_map([panel], grid, times=times, title=title, threshold_label=threshold_label,
                           height=height)


def events_map(lat, lon, hover_text: Sequence[str] | None = None, max_vil=None, title: str = "",
               height: int = 480, highlight: int | None = None):
    """Locations of catalog events on a map with borders.

    The map is a Lambert azimuthal equal-area projection centred on the events (SEVIR's own projection
    for events over the US), in kilometres.

    Parameters
    ----------
    lat, lon : (n,) float64 event-centre coordinates in degrees (see
        :func:`prediff.data.catalog.event_centers`).
    hover_text : (n,) str shown when hovering an event (id, type, time ...).
    max_vil : (n,) maximum VIL pixel of each event (catalog ``data_max``), colouring the markers with the SEVIR
        scale; None = one colour.
    title : figure title.
    height : figure height in pixels.
    highlight : index of an event drawn with a larger red-ringed marker (the chosen event).

    Returns
    -------
    plotly.graph_objects.Figure; its scatter trace 0 has one point per event, in the given order, so a
    Streamlit selection's ``point_index`` is the event's position.
    """
    import plotly.graph_objects as go

    lat = np.asarray(lat, dtype=np.float64)
    lon = np.asarray(lon, dtype=np.float64)
    valid = np.isfinite(lat) & np.isfinite(lon)
    if valid.any():
        center_lat = float(np.clip((lat[valid].min() + lat[valid].max()) / 2, -89.0, 89.0))
        center_lon = float((lon[valid].min() + lon[valid].max()) / 2)
    else:
        center_lat, center_lon = 38.0, -98.0
    proj = laea_proj_for_center(center_lat, center_lon)
    x, y = (np.asarray(v, dtype=np.float64) / 1000.0 for v in project(proj, lon, lat))
    if valid.any():
        span = max(np.ptp(x[valid]), np.ptp(y[valid]), 800.0)
        half = span / 2 * 1.25 + 200.0
        cx = (x[valid].min() + x[valid].max()) / 2
        cy = (y[valid].min() + y[valid].max()) / 2
    else:
        half, cx, cy = 2500.0, 0.0, 0.0
    extent_km = (cx - half * 1.3, cx + half * 1.3, cy - half, cy + half)
    figure = go.Figure()
    marker = {"size": 9, "line": {"width": 0.5, "color": "#333"}}
    if max_vil is not None:
        marker.update(color=np.asarray(max_vil, dtype=np.float64), colorscale=plotly_vil_colorscale(), cmin=0,
                      cmax=MISSING_PIXEL, showscale=True,
                      colorbar={**plotly_vil_colorbar("max VIL (pixel)"), "len": 0.8, "thickness": 14})
    else:
        marker["color"] = "#1f77b4"
    figure.add_trace(go.Scatter(x=x, y=y, mode="markers", marker=marker, name="events",
                                text=list(hover_text) if hover_text is not None else None,
                                hovertemplate="%{text}<extra></extra>" if hover_text is not None else None,
                                showlegend=False))
    lines = basemap_lines(proj, tuple(value * 1000.0 for value in extent_km), margin=0.05)
    for layer, (line_x, line_y) in lines.items():
        if line_x.size:
            figure.add_trace(go.Scatter(x=line_x / 1000.0, y=line_y / 1000.0, mode="lines", hoverinfo="skip",
                                        line={"color": "#555" if layer != "lakes" else "#6a9fd8",
                                              "width": 0.6 if layer == "state_borders" else 1.0},
                                        showlegend=False, name=layer.replace("_", " ")))
    if highlight is not None and 0 <= highlight < len(x):
        figure.add_trace(go.Scatter(x=[x[highlight]], y=[y[highlight]], mode="markers", hoverinfo="skip",
                                    marker={"size": 18, "color": "rgba(0,0,0,0)",
                                            "line": {"width": 3, "color": "#d62728"}},
                                    showlegend=False, name="chosen event"))
    figure.update_xaxes(range=list(extent_km[:2]), showgrid=False, zeroline=False, showticklabels=False,
                        constrain="domain")
    figure.update_yaxes(range=list(extent_km[2:]), showgrid=False, zeroline=False, showticklabels=False,
                        scaleanchor="x", scaleratio=1, constrain="domain")
    figure.update_layout(title={"text": title}, height=height, plot_bgcolor="#f4f4f0",
                         margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 10}, dragmode="pan")
    return figure


#: Empty columns between the panels of :func:`vil_strip_figure`, as a fraction of a panel's width.
STRIP_GAP = 0.06


def vil_strip_figure(frames, grid: Grid, labels: Sequence[str], title: str = "", height: int = 300):
    """Several VIL frames side by side in one static plotly heatmap (e.g. the six lead times of a forecast).

    One heatmap and one outline trace for all panels instead of a subplot per frame, so the figure is built and
    sent quickly; the step-through view redraws it at every step. Hover shows latitude / longitude and VIL.

    Parameters
    ----------
    frames : (T, H, W) VIL pixel 0-255 (uint8 or float) on ``grid``; 255 or NaN = missing (drawn blank, like
        the gaps between panels).
    grid : georeferencing of the frames (row 0 = south).
    labels : (T,) panel titles, e.g. "+10 min".
    title : figure title.
    height : figure height in pixels.

    Returns
    -------
    plotly.graph_objects.Figure.
    """
    import plotly.graph_objects as go

    frames = np.asarray(frames)
    if frames.ndim != 3 or frames.shape[1:] != grid.shape:
        raise ValueError(f"frames must be (T, H, W) on the grid {grid.shape}, got shape {frames.shape}")
    if len(labels) != len(frames):
        raise ValueError(f"{len(labels)} labels for {len(frames)} frames")
    stride = _display_stride(grid)
    panels = [to_display_pixels(_block_max(frame, stride, "vil")) for frame in frames]
    rows, columns = panels[0].shape
    gap = max(2, int(round(columns * STRIP_GAP)))
    pitch = columns + gap
    blank = np.full((rows, gap), MISSING_PIXEL, dtype=np.uint8)
    z = np.concatenate([part for panel in panels for part in (panel, blank)][:-1], axis=1)
    latlon = _latlon(grid, stride)
    blank_latlon = np.full((rows, gap, 2), np.nan, dtype=np.float32)
    latlon = np.concatenate([part for _ in panels for part in (latlon, blank_latlon)][:-1], axis=1)
    kg = vil_pixels_to_kg_m2(z).astype(np.float32)
    # a static strip: numeric latitude / longitude (a per-pixel string array costs more to build than the rest)
    figure = go.Figure(go.Heatmap(z=z, customdata=np.concatenate([latlon, kg[..., None]], axis=-1),
                                  coloraxis="coloraxis", hoverongaps=False,
                                  hovertemplate="lat %{customdata[0]:.2f}°, lon %{customdata[1]:.2f}°<br>VIL "
                                                "pixel %{z} = %{customdata[2]:.2f} kg m<sup>-2</sup><extra></extra>"))
    # outlines in pixel units of one panel, repeated at every panel's offset; cut at the panel edges
    x_km = _block_mean_1d(grid.x, stride)
    y_km = _block_mean_1d(grid.y, stride)
    line_x, line_y = [], []
    for x, y in basemap_for_grid(grid, margin=0.0).values():
        if x.size == 0:
            continue
        column = (x - x_km[0]) / (x_km[1] - x_km[0])
        row = (y - y_km[0]) / (y_km[1] - y_km[0])
        outside = (column < -0.5) | (column > columns - 0.5) | (row < -0.5) | (row > rows - 0.5)
        column = np.where(outside, np.nan, column)
        for index in range(len(panels)):
            line_x.append(np.append(column + index * pitch, np.nan))
            line_y.append(np.append(row, np.nan))
    if line_x:
        figure.add_trace(go.Scatter(x=np.concatenate(line_x), y=np.concatenate(line_y), mode="lines",
                                    line={"color": "rgba(60,60,60,0.8)", "width": 0.8}, hoverinfo="skip",
                                    showlegend=False))
    figure.update_xaxes(visible=False, range=[-0.5, z.shape[1] - 0.5], constrain="domain")
    figure.update_yaxes(visible=False, range=[-0.5, rows - 0.5], scaleanchor="x", scaleratio=1, constrain="domain")
    annotations = [{"text": label, "x": index * pitch + (columns - 1) / 2, "y": rows - 0.5, "xref": "x",
                    "yref": "y", "yanchor": "bottom", "showarrow": False, "font": {"size": 12}}
                   for index, label in enumerate(labels)]
    figure.update_layout(title={"text": title}, height=height, plot_bgcolor="white", annotations=annotations,
                         margin={"l": 10, "r": 10, "t": 50 if title else 30, "b": 10},
                         coloraxis={"colorscale": plotly_vil_colorscale(), "cmin": 0, "cmax": 255,
                                    "colorbar": {**plotly_vil_colorbar("VIL (pixel)"), "len": 0.95,
                                                 "thickness": 12}})
    return figure
