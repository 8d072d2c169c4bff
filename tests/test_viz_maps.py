"""Plotly maps: animated VIL, synchronized panels, probability of exceedance, event locations."""

import numpy as np
import pytest

from prediff.data.geo import SEVIR_PROJ, corners_for_center, grid_from_corners, unproject
from prediff.viz.maps import MapPanel, events_map, multi_panel_map, probability_map, vil_map


@pytest.fixture(scope="module")
def grid():
    return grid_from_corners(SEVIR_PROJ, *corners_for_center(SEVIR_PROJ, 41.88, -87.63, 384000.0, 384000.0), 64, 64)


def _frames(steps=4, size=64):
    frames = np.zeros((steps, size, size), dtype=np.uint8)
    for t in range(steps):
        frames[t, 10 + t, 20] = 200
    frames[:, 0, :] = 255
    return frames


def test_vil_map_animates_every_frame_with_hover_values(grid):
    frames = _frames()
    figure = vil_map(frames, grid, times=np.array(["2019-06-01T12:00", "2019-06-01T12:10", "2019-06-01T12:20",
                                                   "2019-06-01T12:30"], dtype="datetime64[m]"), title="t")
    assert len(figure.frames) == 4
    assert [frame.name for frame in figure.frames][1] == "12:10 UTC"
    heatmap = figure.data[0]
    assert heatmap.type == "heatmap"
    # frame t carries frame t's pixels; missing stays 255 (transparent in the colour scale)
    z = np.asarray(figure.frames[2].data[0].z)
    assert z[12, 20] == 200 and z[0, 5] == 255
    kg = np.asarray(figure.frames[2].data[0].customdata)
    assert np.isclose(kg[12, 20], np.exp((200 - 83.9) / 38.9), rtol=1e-5) and np.isnan(kg[0, 5])
    # x/y in km on the grid's projected coordinates, equal aspect
    assert np.allclose(np.asarray(heatmap.x), grid.x / 1000.0)
    assert figure.layout.yaxis.scaleanchor == "x"
    lon, lat = unproject(grid.proj, grid.x[7], grid.y[5])
    assert heatmap.text[5][7] == f"{lat:.2f}°N, {-lon:.2f}°W"
    assert any(trace.name == "lakes" for trace in figure.data)
    assert figure.layout.sliders[0].steps[3].label == "12:30 UTC"
    overnight = vil_map(frames[:2], grid, times=np.array(["2019-06-01T23:55", "2019-06-02T00:05"],
                                                         dtype="datetime64[m]"))
    assert [frame.name for frame in overnight.frames] == ["06-01 23:55 UTC", "06-02 00:05 UTC"]
    assert [button.label for button in figure.layout.updatemenus[0].buttons] == ["▶ Play", "❚❚ Pause"]


def test_float_fields_nan_becomes_missing(grid):
    frames = np.full((1, 64, 64), 100.4, dtype=np.float32)
    frames[0, 3, 3] = np.nan
    figure = vil_map(frames, grid)
    z = np.asarray(figure.data[0].z)
    assert z.dtype == np.uint8 and z[3, 3] == 255 and z[4, 4] == 100
    assert len(figure.frames) == 1 and not figure.layout.sliders


def test_multi_panel_synchronizes_and_holds_shorter_panels(grid):
    context = _frames(2)
    forecast = _frames(4)
    probability = np.linspace(0, 1, 4 * 64 * 64).reshape(4, 64, 64)
    figure = multi_panel_map([MapPanel("Context", context), MapPanel("Forecast", forecast),
                              MapPanel("P", probability, kind="probability", label="P(VIL ≥ 133)")],
                             grid, times=["+10", "+20", "+30", "+40"])
    assert len(figure.frames) == 4
    last = figure.frames[3]
    assert len(last.data) == 3
    # the 2-frame context panel holds its last frame
    assert np.array_equal(np.asarray(last.data[0].z), context[1])
    assert np.array_equal(np.asarray(last.data[1].z), forecast[3])
    assert np.allclose(np.asarray(last.data[2].z), probability[3])
    assert figure.layout.coloraxis2.cmax == 1.0 and figure.layout.coloraxis.cmax == 255
    assert figure.layout.xaxis2.matches == "x"


def test_probability_map_checks_range(grid):
    figure = probability_map(np.full((64, 64), 0.25), grid, "P(VIL ≥ 74)")
    assert figure.data[0].coloraxis == "coloraxis2"
    assert "P(VIL ≥ 74)" in figure.data[0].hovertemplate
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        probability_map(np.full((64, 64), 3.0), grid, "P")


def test_shape_errors(grid):
    with pytest.raises(ValueError, match="grid is"):
        vil_map(np.zeros((2, 32, 32), np.uint8), grid)
    with pytest.raises(ValueError, match=r"\(T, H, W\)"):
        MapPanel("x", np.zeros(5))
    with pytest.raises(ValueError, match="kind"):
        MapPanel("x", np.zeros((1, 2, 2)), kind="rain")


def test_events_map_places_events_and_highlights_one():
    lat = np.array([35.2, 41.9, 30.3])
    lon = np.array([-97.4, -87.6, -90.0])
    figure = events_map(lat, lon, hover_text=["a", "b", "c"], max_vil=[100, 200, 50], highlight=1)
    points = figure.data[0]
    assert len(points.x) == 3 and list(points.text) == ["a", "b", "c"]
    # Chicago is north-east of Oklahoma City in the map's projected km
    assert points.x[1] > points.x[0] and points.y[1] > points.y[0]
    assert figure.data[-1].name == "chosen event" and figure.data[-1].x[0] == points.x[1]
    assert any(trace.name == "state borders" for trace in figure.data)
    empty = events_map(np.array([]), np.array([]))
    assert len(empty.data[0].x) == 0


def test_large_fields_are_shown_as_block_maxima():
    big = grid_from_corners(SEVIR_PROJ, *corners_for_center(SEVIR_PROJ, 38.0, -98.0, 384000.0, 384000.0), 384, 384)
    frames = np.zeros((1, 384, 384), dtype=np.uint8)
    frames[0, 101, 51] = 180          # a one-pixel peak survives the 2 x 2 reduction
    frames[0, 200:202, 200:202] = 255  # a fully missing block stays missing
    frames[0, 300, 300] = 255          # a partly missing block shows its valid maximum
    frames[0, 301, 301] = 40
    figure = vil_map(frames, big)
    z = np.asarray(figure.data[0].z)
    assert z.shape == (192, 192)
    assert z[50, 25] == 180 and z[100, 100] == 255 and z[150, 150] == 40
    x = np.asarray(figure.data[0].x)
    assert np.isclose(x[0], (big.x[0] + big.x[1]) / 2000.0)
    assert np.isclose(figure.layout.xaxis.range[0], big.extent()[0] / 1000.0)


def test_vil_strip_figure_places_frames_side_by_side(grid):
    from prediff.viz.maps import vil_strip_figure

    frames = _frames()
    figure = vil_strip_figure(frames, grid, ["+10 min", "+20 min", "+30 min", "+40 min"], title="strip")
    heatmap = figure.data[0]
    z = np.asarray(heatmap.z)
    rows, columns = grid.shape
    gap = (z.shape[1] - 4 * columns) // 3
    assert z.shape[0] == rows and gap >= 2 and z.shape[1] == 4 * columns + 3 * gap
    # panel k starts k * (columns + gap) columns in; the gaps are blank (missing code)
    assert np.array_equal(z[:, 2 * (columns + gap):2 * (columns + gap) + columns], frames[2])
    assert np.all(z[:, columns:columns + gap] == 255)
    assert [a.text for a in figure.layout.annotations] == ["+10 min", "+20 min", "+30 min", "+40 min"]
    hover = np.asarray(heatmap.customdata)
    lon, lat = unproject(grid.proj, grid.x[7], grid.y[5])
    assert hover.shape == z.shape + (3,) and np.allclose(hover[5, columns + gap + 7, :2], [lat, lon], atol=1e-3)
    with pytest.raises(ValueError, match="labels"):
        vil_strip_figure(frames, grid, ["one"])
