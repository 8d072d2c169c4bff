"""MSE, MAE and SSIM (prediff.verify.continuous)."""

import cv2
import numpy as np
import pytest

from prediff.verify.continuous import (SSIM_C1, SSIM_C2, continuous_accum, continuous_compute, continuous_init,
                                       continuous_merge, gaussian_window_1d, ssim_frames)


def _opencv_ssim(x, y, border):
    """SSIM of one 2-D frame pair the way the MindEarth reference computes it (OpenCV filter2D, crop 5)."""
    window = np.outer(cv2.getGaussianKernel(11, 1.5), cv2.getGaussianKernel(11, 1.5).T)

    def blur(image):
        return cv2.filter2D(image, -1, window, borderType=border)[5:-5, 5:-5]

    mu_x, mu_y = blur(x), blur(y)
    var_x, var_y, cov = blur(x * x) - mu_x ** 2, blur(y * y) - mu_y ** 2, blur(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + SSIM_C1) * (2 * cov + SSIM_C2)) / ((mu_x ** 2 + mu_y ** 2 + SSIM_C1)
                                                                     * (var_x + var_y + SSIM_C2))
    return ssim_map, ssim_map.mean()


def test_mse_and_mae_in_pixels_and_unit_scale_ignore_missing():
    observation = np.full((2, 3, 8, 8), 100.0)
    forecast = observation + 10.0
    forecast[0, 0, 0, 0] = np.nan
    observation[1, 2, 3, 3] = 255
    forecast[1, 1] = 0.0
    state = continuous_init(3, ssim=False)
    continuous_accum(state, forecast, observation)
    result = continuous_compute(state)
    per_lead = result["per_lead_time"]
    assert per_lead["pairs"].tolist() == [127, 128, 127]
    assert per_lead["MSE_pixel"][0] == pytest.approx(100.0)
    assert per_lead["MAE_pixel"][2] == pytest.approx(10.0)
    assert per_lead["MSE_pixel"][1] == pytest.approx((64 * 100 + 64 * 100 ** 2) / 128)
    assert per_lead["MSE"][0] == pytest.approx(100.0 / 255 ** 2)
    assert per_lead["MAE"][0] == pytest.approx(10.0 / 255)
    assert "SSIM" not in per_lead
    assert result["all_lead_times"]["pairs"] == 382


def test_gaussian_window_matches_opencv():
    np.testing.assert_allclose(gaussian_window_1d(), cv2.getGaussianKernel(11, 1.5)[:, 0], rtol=1e-12)


@pytest.mark.parametrize("border", [cv2.BORDER_REFLECT_101, cv2.BORDER_CONSTANT, cv2.BORDER_REPLICATE])
def test_ssim_matches_the_opencv_reference_whatever_the_border_mode(border):
    rng = np.random.default_rng(0)
    x = rng.random((3, 40, 48))
    y = np.clip(x + rng.normal(0, 0.2, x.shape), 0, 1)
    ours, used = ssim_frames(x, y)
    assert used.all()
    for f in range(3):
        assert ours[f] == pytest.approx(_opencv_ssim(x[f], y[f], border)[1], abs=1e-12)


def test_ssim_is_one_for_identical_frames_and_streams_per_lead_time():
    rng = np.random.default_rng(1)
    observation = rng.uniform(0, 254, size=(2, 2, 32, 32))
    forecast = observation.copy()
    forecast[:, 1] = np.clip(observation[:, 1] + rng.normal(0, 30, size=(2, 32, 32)), 0, 254)
    state = continuous_init(2)
    continuous_accum(state, forecast, observation)
    result = continuous_compute(state)
    assert result["per_lead_time"]["SSIM"][0] == pytest.approx(1.0)
    expected = np.mean([_opencv_ssim(forecast[n, 1] / 255, observation[n, 1] / 255, cv2.BORDER_REFLECT_101)[1]
                        for n in range(2)])
    assert result["per_lead_time"]["SSIM"][1] == pytest.approx(expected, abs=1e-12)
    assert result["all_lead_times"]["SSIM"] == pytest.approx((1.0 + expected) / 2, abs=1e-12)
    assert result["per_lead_time"]["SSIM_frames"].tolist() == [2, 2]


def test_ssim_with_missing_pixels_uses_only_fully_valid_windows():
    rng = np.random.default_rng(2)
    observation = rng.uniform(0, 254, size=(1, 1, 30, 30))
    forecast = np.clip(observation + rng.normal(0, 40, size=observation.shape), 0, 254)
    holey = observation.copy()
    holey[0, 0, 0, 0] = 255  # touches the windows of interior pixels (5..10, 5..10) only
    state = continuous_init(1)
    continuous_accum(state, forecast, holey)
    ssim_map, _ = _opencv_ssim(forecast[0, 0] / 255, observation[0, 0] / 255, cv2.BORDER_REFLECT_101)
    usable = np.ones_like(ssim_map, dtype=bool)
    usable[:1, :1] = False  # interior pixel (5, 5) is the only one whose window reaches (0, 0)
    assert continuous_compute(state)["all_lead_times"]["SSIM"] == pytest.approx(ssim_map[usable].mean(), abs=1e-12)
    empty = continuous_init(1)
    continuous_accum(empty, forecast, np.full_like(observation, np.nan))
    assert np.isnan(continuous_compute(empty)["all_lead_times"]["SSIM"])


def test_merge_equals_one_pass():
    rng = np.random.default_rng(4)
    observation = rng.uniform(0, 254, size=(3, 2, 24, 24))
    forecast = rng.uniform(0, 254, size=(3, 2, 24, 24))
    whole, first, second = continuous_init(2), continuous_init(2), continuous_init(2)
    continuous_accum(whole, forecast, observation)
    continuous_accum(first, forecast[:2], observation[:2])
    continuous_accum(second, forecast[2:], observation[2:])
    merged = continuous_compute(continuous_merge(first, second))
    expected = continuous_compute(whole)
    for name, value in expected["per_lead_time"].items():
        np.testing.assert_allclose(merged["per_lead_time"][name], value, rtol=1e-12)
