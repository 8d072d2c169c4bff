"""The SEVIR VIL colour scale in its plotly and matplotlib forms."""

import numpy as np
import pytest

from prediff.viz.colormap import (VIL_COLORS, VIL_LEVELS, matplotlib_vil_cmap, mask_missing, plotly_vil_colorbar,
                                  plotly_vil_colorscale, to_display_pixels, vil_level_labels, vil_to_rgba)

# the SEVIR tutorial's 'vil' colours as 0-255 RGB, for an independent check of the table
TUTORIAL_RGB = [(77, 77, 77), (40, 190, 40), (25, 150, 25), (10, 105, 10), (10, 75, 10), (245, 245, 0),
                (237, 172, 0), (240, 110, 0), (160, 0, 0), (231, 0, 255)]


def test_levels_and_colours_are_the_tutorials():
    assert VIL_LEVELS == (0, 16, 31, 59, 74, 100, 133, 160, 181, 219, 255)
    assert len(VIL_COLORS) == len(VIL_LEVELS) - 1
    assert [tuple(int(round(c * 255)) for c in rgb) for rgb in VIL_COLORS] == TUTORIAL_RGB


@pytest.mark.parametrize("pixel, bin_index", [(0, 0), (15, 0), (16, 1), (30, 1), (31, 2), (74, 4), (132, 5),
                                              (133, 6), (181, 8), (218, 8), (219, 9), (254, 9)])
def test_matplotlib_bins(pixel, bin_index):
    cmap, norm = matplotlib_vil_cmap()
    rgba = cmap(norm(np.array([pixel], dtype=float)))[0]
    assert np.allclose(rgba[:3], VIL_COLORS[bin_index])
    assert rgba[3] == 1.0


def test_missing_is_transparent_or_grey():
    rgba = vil_to_rgba(np.array([[255, 100], [np.nan, 0]]))
    assert rgba.shape == (2, 2, 4) and rgba.dtype == np.uint8
    assert rgba[0, 0, 3] == 0 and rgba[1, 0, 3] == 0
    assert tuple(rgba[0, 1, :3]) == TUTORIAL_RGB[5]
    grey = vil_to_rgba(np.array([255]), missing="grey")
    assert grey[0, 3] == 255 and grey[0, 0] == grey[0, 1] == grey[0, 2]
    assert np.isnan(mask_missing(np.array([255, 3], dtype=np.uint8))[0])
    with pytest.raises(ValueError):
        matplotlib_vil_cmap("pink")


def test_plotly_colorscale_is_discrete_with_transparent_missing():
    scale = plotly_vil_colorscale()
    positions = [position for position, _ in scale]
    assert positions == sorted(positions) and positions[0] == 0.0 and positions[-1] == 1.0

    def colour_at(pixel):
        # a flat band: the last stop at or below the position gives the colour of that band
        position = pixel / 255.0
        return [colour for stop, colour in scale if stop <= position][-1]

    assert colour_at(10) == "#4d4d4d"
    assert colour_at(140) == "#edac00"
    assert colour_at(254) == "#e700ff"
    assert colour_at(255) == "rgba(0,0,0,0)"
    ticks = plotly_vil_colorbar()["tickvals"]
    assert ticks == [0, 16, 74, 133, 160, 181, 219, 254]


def test_display_pixels_and_labels():
    pixels = to_display_pixels(np.array([np.nan, 12.4, 300.0, -3.0]))
    assert pixels.tolist() == [255, 12, 255, 0]
    assert vil_level_labels()[0] == "0-16"
    labels = vil_level_labels("kg m-2")
    assert len(labels) == 10 and labels[0].startswith("0.00-0.15")
