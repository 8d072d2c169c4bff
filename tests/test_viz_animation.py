"""GIF and PNG-strip export of VIL sequences."""

import io

import imageio.v3 as iio
import numpy as np
import pytest

from prediff.data.geo import SEVIR_PROJ, corners_for_center, grid_from_corners
from prediff.viz.animation import vil_gif, vil_strip_png


def _frames():
    frames = np.zeros((3, 32, 32), dtype=np.uint8)
    frames[:, :16, :] = 240  # the southern half is intense
    frames[1, :, :4] = 255
    return frames


def test_gif_has_every_frame_north_up():
    data = vil_gif(_frames(), labels=["a", "b", "c"], size_inches=2.0, dpi=50)
    images = iio.imread(io.BytesIO(data), extension=".gif", index=None)
    assert images.shape[0] == 3
    height = images.shape[1]
    # row 0 of the array is south, so the intense (magenta) half is at the bottom of the picture
    bottom = images[0, int(height * 0.8), images.shape[2] // 2, :3].astype(int)
    top = images[0, int(height * 0.3), images.shape[2] // 2, :3].astype(int)
    assert bottom[0] > 200 and bottom[1] < 60 and bottom[2] > 200
    assert abs(top[0] - 77) < 15 and abs(top[1] - 77) < 15


def test_png_strip_with_borders():
    grid = grid_from_corners(SEVIR_PROJ, *corners_for_center(SEVIR_PROJ, 41.88, -87.63, 384000.0, 384000.0), 32, 32)
    data = vil_strip_png(_frames(), labels=["+10", "+20", "+30"], grid=grid, columns=2)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    image = iio.imread(io.BytesIO(data))
    assert image.shape[1] > image.shape[0]  # two panels wide plus the colour bar, two rows high
    with pytest.raises(ValueError, match="T >= 1"):
        vil_strip_png(np.zeros((0, 4, 4)))
