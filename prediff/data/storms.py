"""Procedural convective storms on a SEVIR-LR patch: the physics behind the demo corpus.

A :class:`StormScene` describes one storm system — its organisation, its steering wind, how strong its cells
get — and :func:`simulate_storm` turns it into a movie of vertically integrated liquid in kg m^-2 on the
SEVIR-LR grid (128 x 128 pixels of 3 km, 25 frames 10 min apart). Encoding to VIL pixels is left to
:mod:`prediff.data.vil`, writing to :mod:`prediff.data.layout`.

The model is kinematic, not dynamical: nothing solves equations of motion. What it keeps from convective
meteorology:

* **Cells with life cycles.** Each cell grows (cumulus stage), stays mature, and decays (dissipating stage),
  30-90 min in all for ordinary cells, longer for supercells. Its core VIL follows that curve while its
  footprint keeps spreading during the decay, as a collapsing storm's precipitation does.
* **Steering wind.** A mean wind that veers slowly plus a few long (400-1200 km), slowly travelling waves,
  so the motion varies smoothly in space and time. Cells move with the wind at their position plus their own
  deviation (Bunkers-like right/left movers for supercells, small random deviations otherwise).
* **Organisation.** Isolated cells; supercells with flanking-line cells that merge into them and storm
  splitting into right- and left-movers; multicell clusters whose new cells are triggered where the outflow
  of mature cells meets the inflow (right-forward flank); squall lines whose cells form along a gust front
  that propagates faster than the wind, with an optional bow echo and a trailing stratiform region;
  back-building, training cells under a stratiform shield (flash-flood MCS).
* **Merging.** Cells whose cores come close merge: the weaker one is drawn in and fades, the survivor gains.
* **Stratiform and texture.** Spatially correlated noise with a power-law spectrum (as radar rain fields
  have), advected by the steering wind and slowly evolving, gives stratiform rain and the small-scale texture
  of convective cores.

Coordinates are kilometres on the patch: ``x`` east from the west edge, ``y`` north from the south edge
(row 0 = south, as in SEVIR). Times are minutes after the first frame. Velocities are km min^-1 inside the
simulation (1 m s^-1 = 0.06 km min^-1); public parameters are in m s^-1.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

#: SEVIR-LR geometry: 128 x 128 pixels of 3 km, 25 frames 10 min apart.
GRID_SIZE = 128
PIXEL_KM = 3.0
FRAME_COUNT = 25
FRAME_MINUTES = 10.0

ORGANISATIONS = ("isolated", "supercell", "multicell", "squall_line", "training")

_M_S_TO_KM_MIN = 0.06
_SUBSTEP_MINUTES = 2.0
#: the simulation starts before the first frame so cells triggered by the system exist at frame 0
_SPIN_UP_MINUTES = 60.0
#: VIL below this is no echo: the detection threshold of the radar mosaic (about VIL pixel 7)
_ECHO_THRESHOLD_KG_M2 = 0.07
_NOISE_SIZE = 256
_NODE_KM = 12.0
_MAX_CORE_RADIUS_KM = 11.0
#: how far a bow segment's apex runs ahead of the rest of its squall line
_BOW_KM = 45.0
_MAX_CELLS = 600


@dataclasses.dataclass(frozen=True)
class SteeringWind:
    """Steering-level wind over the patch: a slowly veering mean plus long, slowly travelling waves.

    Attributes
    ----------
    speed_m_s : mean wind speed at the first frame, m s^-1.
    direction_deg : meteorological direction the mean wind blows *from*, degrees clockwise from north
        (240 = from the south-west, moving storms to the north-east).
    veer_deg_per_hour : turning of the mean direction with time, degrees per hour, positive = clockwise.
    wave_amplitude_m_s : (M,) amplitude of each wave's wind perturbation, m s^-1.
    wave_vector_per_km : (M, 2) wave vector (k_x, k_y) of each wave, radians per km.
    wave_frequency_per_min : (M,) angular frequency of each wave, radians per minute.
    wave_phase : (M,) phase of each wave at the origin and the first frame, radians.
    wave_orientation_deg : (M,) direction of each wave's perturbation vector, degrees counter-clockwise from east.
    """

    speed_m_s: float
    direction_deg: float
    veer_deg_per_hour: float = 0.0
    wave_amplitude_m_s: tuple[float, ...] = ()
    wave_vector_per_km: tuple[tuple[float, float], ...] = ()
    wave_frequency_per_min: tuple[float, ...] = ()
    wave_phase: tuple[float, ...] = ()
    wave_orientation_deg: tuple[float, ...] = ()

    @classmethod
    def draw(cls, rng: np.random.Generator, speed_m_s: float, direction_deg: float, waves: int = 3) -> "SteeringWind":
        """A wind with the given mean and ``waves`` random perturbation waves of 400-1200 km, 1-3 m s^-1.

        Wave periods are 3-10 h, so the wind a storm feels changes over the 4-hour event but never jumps.
        """
        wavelength_km = rng.uniform(400.0, 1200.0, waves)
        heading = rng.uniform(0.0, 2 * math.pi, waves)
        wave_number = 2 * math.pi / wavelength_km
        period_min = rng.uniform(180.0, 600.0, waves)
        return cls(
            speed_m_s=float(speed_m_s),
            direction_deg=float(direction_deg),
            veer_deg_per_hour=float(rng.normal(4.0, 4.0)),
            wave_amplitude_m_s=tuple(float(a) for a in rng.uniform(1.0, 3.0, waves)),
            wave_vector_per_km=tuple((float(k * math.cos(h)), float(k * math.sin(h)))
                                     for k, h in zip(wave_number, heading)),
            wave_frequency_per_min=tuple(float(w) for w in 2 * math.pi / period_min),
            wave_phase=tuple(float(p) for p in rng.uniform(0.0, 2 * math.pi, waves)),
            wave_orientation_deg=tuple(float(o) for o in rng.uniform(0.0, 360.0, waves)),
        )

    def mean_velocity(self, t_min) -> tuple[np.ndarray, np.ndarray]:
        """Mean wind without the waves.

        Parameters
        ----------
        t_min : array_like, minutes after the first frame.

        Returns
        -------
        (u, v) : each of ``t_min``'s shape, float64, km min^-1 (eastward, northward).
        """
        direction = np.radians(self.direction_deg + self.veer_deg_per_hour * np.asarray(t_min, dtype=float) / 60.0)
        speed = self.speed_m_s * _M_S_TO_KM_MIN
        return -speed * np.sin(direction), -speed * np.cos(direction)

    def velocity(self, x_km, y_km, t_min) -> tuple[np.ndarray, np.ndarray]:
        """Steering wind at given places and time.

        Parameters
        ----------
        x_km, y_km : array_like, broadcastable, position on the patch, km east / north of its south-west corner.
        t_min : float, minutes after the first frame.

        Returns
        -------
        (u, v) : each of the broadcast shape, float64, km min^-1 (eastward, northward; 1 m s^-1 = 0.06).
        """
        x = np.asarray(x_km, dtype=float)
        y = np.asarray(y_km, dtype=float)
        u, v = self.mean_velocity(t_min)
        u = u + np.zeros(np.broadcast(x, y).shape)
        v = v + np.zeros(np.broadcast(x, y).shape)
        for amplitude, (kx, ky), omega, phase, orientation in zip(
                self.wave_amplitude_m_s, self.wave_vector_per_km, self.wave_frequency_per_min, self.wave_phase,
                self.wave_orientation_deg):
            wave = amplitude * _M_S_TO_KM_MIN * np.cos(kx * x + ky * y - omega * t_min + phase)
            u = u + wave * math.cos(math.radians(orientation))
            v = v + wave * math.sin(math.radians(orientation))
        return u, v


@dataclasses.dataclass(frozen=True)
class StormScene:
    """One storm system to simulate.

    Attributes
    ----------
    organisation : one of :data:`ORGANISATIONS`.
    wind : the steering wind.
    peak_vil_kg_m2 : typical core VIL of the system's mature cells, kg m^-2 (SEVIR's severe threshold,
        VIL pixel 219, is about 32 kg m^-2; the encoding saturates near 79 kg m^-2).
    centre_km : (x, y) where the system is aimed to be at the middle frame, km on the patch (192, 192 = centre).
    instability_trend : multiplies the strength and trigger rate of new cells, linearly from 1 at the
        first frame to ``1 + instability_trend`` at the last (negative = the environment stabilises).
    stratiform_vil_kg_m2 : peak VIL of stratiform rain (trailing region, shield or background), kg m^-2;
        0 = none.
    scattered_cells : number of isolated air-mass cells popping up anywhere on the patch during the event.
    bow_echo : squall lines only: whether a bow segment develops.
    """

    organisation: str
    wind: SteeringWind
    peak_vil_kg_m2: float
    centre_km: tuple[float, float] = (GRID_SIZE * PIXEL_KM / 2, GRID_SIZE * PIXEL_KM / 2)
    instability_trend: float = 0.0
    stratiform_vil_kg_m2: float = 0.0
    scattered_cells: int = 0
    bow_echo: bool = False

    def __post_init__(self):
        if self.organisation not in ORGANISATIONS:
            raise ValueError(f"unknown organisation {self.organisation!r}; choose one of {', '.join(ORGANISATIONS)}")


@dataclasses.dataclass
class StormSimulation:
    """Result of :func:`simulate_storm`.

    Attributes
    ----------
    vil_kg_m2 : (T, H, W) float32 vertically integrated liquid, kg m^-2, row 0 = south, T = 25 frames 10 min apart.
    times_min : (T,) float64 minutes of each frame after the first.
    mean_wind_m_s : (T, 2) float64 steering wind (u, v) at the patch centre at each frame, m s^-1.
    cell_x_km, cell_y_km : (N, T) float64 position of every simulated cell at each frame, km (NaN when the
        cell does not exist at that frame).
    cell_vil_kg_m2 : (N, T) float64 core VIL of every cell at each frame (life cycle x strength), kg m^-2.
    cell_is_supercell : (N,) bool, True for supercells (including left-movers split off them).
    cell_deviation_m_s : (N, 2) float64 each cell's motion relative to the steering wind (u, v), m s^-1.
    cell_merged : (N,) bool, True for cells that merged into a stronger one.
    system_motion_m_s : (2,) float64 velocity (u, v) of the system as a whole at the first frame, m s^-1.
    """

    vil_kg_m2: np.ndarray
    times_min: np.ndarray
    mean_wind_m_s: np.ndarray
    cell_x_km: np.ndarray
    cell_y_km: np.ndarray
    cell_vil_kg_m2: np.ndarray
    cell_is_supercell: np.ndarray
    cell_deviation_m_s: np.ndarray
    cell_merged: np.ndarray
    system_motion_m_s: np.ndarray


def life_cycle(age_min, growth_min, mature_min, decay_min) -> np.ndarray:
    """Fraction of its peak core VIL that a convective cell has at ``age_min``: 0 -> 1 -> 1 -> 0.

    Growth and decay follow a smoothstep, so the core strengthens and weakens without kinks.

    Parameters
    ----------
    age_min : array_like, minutes since the cell was triggered (negative = not yet born).
    growth_min, mature_min, decay_min : array_like, durations of the cumulus, mature and dissipating stages, minutes.

    Returns
    -------
    np.ndarray, broadcast shape, float64 in [0, 1].
    """
    age = np.asarray(age_min, dtype=float)
    rise = _smoothstep(age / growth_min)
    fall = 1.0 - _smoothstep((age - growth_min - mature_min) / decay_min)
    return np.where(age < 0, 0.0, np.minimum(rise, fall))


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def spectral_noise(rng: np.random.Generator, size: int, exponent: float, largest_km: float) -> np.ndarray:
    """Periodic Gaussian noise with a power-law spectrum P(k) ~ (k^2 + k0^2)^(-exponent / 2).

    Radar rain fields have roughly such spectra (exponent about 2-3.5); ``k0`` = 1 / ``largest_km`` flattens
    the spectrum above that scale so no single huge blob dominates.

    Parameters
    ----------
    rng : the random stream to draw from.
    size : side of the square field, pixels of :data:`PIXEL_KM`.
    exponent : spectral slope.
    largest_km : scale (km) above which the spectrum is flat.

    Returns
    -------
    np.ndarray, (size, size) float64, zero mean, unit standard deviation.
    """
    white = rng.standard_normal((size, size))
    ky = np.fft.fftfreq(size, d=PIXEL_KM)[:, None]
    kx = np.fft.rfftfreq(size, d=PIXEL_KM)[None, :]
    amplitude = (kx ** 2 + ky ** 2 + (1.0 / largest_km) ** 2) ** (-exponent / 4.0)
    amplitude[0, 0] = 0.0
    field = np.fft.irfft2(np.fft.rfft2(white) * amplitude, s=(size, size))
    return (field - field.mean()) / field.std()


class _Cells:
    """The cell population of one simulation, as parallel arrays (a few hundred cells at most)."""

    ORDINARY = 0
    SUPERCELL = 1

    def __init__(self):
        self.count = 0
        names = ("x", "y", "birth", "peak", "growth", "mature", "decay", "radius", "aspect", "anvil",
                 "dev_u", "dev_v", "absorbed_by", "absorbed_at", "split_at", "axis")
        for name in names:
            setattr(self, name, np.full(_MAX_CELLS, np.nan))
        self.absorbed_by[:] = -1
        self.kind = np.full(_MAX_CELLS, self.ORDINARY, dtype=np.int8)

    def add(self, x, y, birth, peak, growth, mature, decay, radius, aspect=1.2, anvil=0.1, dev_u=0.0, dev_v=0.0,
            kind=ORDINARY, split_at=np.nan) -> int:
        """Append a cell; returns its index, or -1 when the population is full (the cell is dropped)."""
        if self.count >= _MAX_CELLS:
            return -1
        i = self.count
        self.x[i], self.y[i], self.birth[i], self.peak[i] = x, y, birth, peak
        self.growth[i], self.mature[i], self.decay[i] = growth, mature, decay
        self.radius[i], self.aspect[i], self.anvil[i] = radius, aspect, anvil
        self.dev_u[i], self.dev_v[i], self.kind[i] = dev_u, dev_v, kind
        self.split_at[i] = split_at
        self.count += 1
        return i

    def view(self, name):
        return getattr(self, name)[:self.count]

    def age(self, t):
        return t - self.view("birth")

    def lifetime(self):
        return self.view("growth") + self.view("mature") + self.view("decay")

    def strength(self, t) -> np.ndarray:
        """Core VIL (kg m^-2) of every cell at time t, including the fading of absorbed cells."""
        core = self.view("peak") * life_cycle(self.age(t), self.view("growth"), self.view("mature"),
                                              self.view("decay"))
        absorbed = self.view("absorbed_by") >= 0
        fade = np.where(absorbed, np.clip(1.0 - (t - self.view("absorbed_at")) / 12.0, 0.0, 1.0), 1.0)
        return core * fade

    def alive(self, t) -> np.ndarray:
        age = self.age(t)
        return (age >= 0) & (age <= self.lifetime()) & (self.strength(t) > 0)

    def radius_at(self, t) -> np.ndarray:
        """Core e-folding radius (km): small while growing, spreading by a third while decaying."""
        age = self.age(t)
        growth, mature, decay = self.view("growth"), self.view("mature"), self.view("decay")
        grown = _smoothstep(age / growth)
        spreading = _smoothstep((age - growth - mature) / decay)
        return self.view("radius") * (0.55 + 0.45 * grown) * (1.0 + 0.35 * spreading)


def simulate_storm(scene: StormScene, rng: np.random.Generator) -> StormSimulation:
    """Simulate ``scene`` and render its VIL on the SEVIR-LR grid.

    Parameters
    ----------
    scene : the storm system.
    rng : random stream; the same stream state gives the same result.

    Returns
    -------
    StormSimulation with ``vil_kg_m2`` (25, 128, 128) float32 kg m^-2 (0 = no echo).
    """
    times = np.arange(FRAME_COUNT) * FRAME_MINUTES
    cells = _Cells()
    system = _System.create(scene, rng, cells)
    noise = _NoiseFields(rng)
    centre = GRID_SIZE * PIXEL_KM / 2
    pixel_centres = (np.arange(GRID_SIZE) + 0.5) * PIXEL_KM
    grid_x, grid_y = np.meshgrid(pixel_centres, pixel_centres)
    # departure-point displacement of the air arriving at each point, for advecting the noise fields; the
    # wind varies over hundreds of km, so a 12 km node grid interpolated to the pixels is enough
    nodes = np.arange(0.0, GRID_SIZE * PIXEL_KM + _NODE_KM, _NODE_KM)
    node_x, node_y = np.meshgrid(nodes, nodes)
    node_displacement = np.zeros((2,) + node_x.shape)

    # inside an organised system's envelope half of the area rains; elsewhere only the strongest noise patches
    stratiform_threshold = 0.0 if scene.organisation in ("squall_line", "training") else 1.2

    frames, winds, snapshots = [], [], []
    t = -_SPIN_UP_MINUTES
    for frame_time in times:
        while t < frame_time - 1e-9:
            system.step(t, _SUBSTEP_MINUTES)
            if t >= 0:
                u, v = scene.wind.velocity(node_x - node_displacement[0], node_y - node_displacement[1], t)
                node_displacement[0] += u * _SUBSTEP_MINUTES
                node_displacement[1] += v * _SUBSTEP_MINUTES
            t += _SUBSTEP_MINUTES
        displacement = _nodes_to_pixels(node_displacement)
        convective = _render_cells(cells, frame_time, scene.wind) + system.line_band(grid_x, grid_y, frame_time)
        texture = noise.texture(displacement, frame_time)
        stratiform = (system.stratiform(grid_x, grid_y, frame_time)
                      * noise.stratiform(displacement, frame_time, threshold=stratiform_threshold))
        vil = convective * texture + stratiform
        frames.append(np.where(vil >= _ECHO_THRESHOLD_KG_M2, vil, 0.0).astype(np.float32))
        u, v = scene.wind.velocity(centre, centre, frame_time)
        winds.append((float(u) / _M_S_TO_KM_MIN, float(v) / _M_S_TO_KM_MIN))
        alive = cells.alive(frame_time)
        snapshots.append((np.where(alive, cells.view("x"), np.nan), np.where(alive, cells.view("y"), np.nan),
                          np.where(alive, cells.strength(frame_time), 0.0)))

    n = cells.count
    track = [np.stack([np.pad(s[k], (0, n - s[k].size), constant_values=fill) for s in snapshots], axis=1)
             for k, fill in ((0, np.nan), (1, np.nan), (2, 0.0))]
    return StormSimulation(vil_kg_m2=np.stack(frames), times_min=times.astype(float),
                           mean_wind_m_s=np.asarray(winds), cell_x_km=track[0], cell_y_km=track[1],
                           cell_vil_kg_m2=track[2],
                           cell_is_supercell=cells.view("kind") == _Cells.SUPERCELL,
                           cell_deviation_m_s=np.stack([cells.view("dev_u"), cells.view("dev_v")], axis=1)
                           / _M_S_TO_KM_MIN,
                           cell_merged=cells.view("absorbed_by") >= 0,
                           system_motion_m_s=system.motion / _M_S_TO_KM_MIN)


def _nodes_to_pixels(node_field: np.ndarray) -> np.ndarray:
    """Bilinear interpolation of a (C, n, n) field on the :data:`_NODE_KM` node grid to (C, H, W) pixel centres."""
    from scipy.ndimage import map_coordinates

    position = (np.arange(GRID_SIZE) + 0.5) * PIXEL_KM / _NODE_KM
    rows, columns = np.meshgrid(position, position, indexing="ij")
    return np.stack([map_coordinates(channel, [rows, columns], order=1, mode="nearest") for channel in node_field])


def _render_cells(cells: _Cells, t: float, wind: SteeringWind) -> np.ndarray:
    """Sum of every living cell's VIL footprint at time t, (H, W) float64 kg m^-2.

    A cell is an anisotropic exponential-profile core, exp(-rho^1.5), stretched along its motion (or along its
    squall line), plus a weak, broad forward-flank/anvil component carried ahead of it.
    """
    field = np.zeros((GRID_SIZE, GRID_SIZE))
    alive = np.flatnonzero(cells.alive(t))
    if alive.size == 0:
        return field
    strength = cells.strength(t)[alive]
    radius = cells.radius_at(t)[alive]
    x, y = cells.view("x")[alive], cells.view("y")[alive]
    u, v = wind.velocity(x, y, t)
    u, v = u + cells.view("dev_u")[alive], v + cells.view("dev_v")[alive]
    # cores stretch along their motion, except line cells, which stretch along the line (axis set)
    axis = cells.view("axis")[alive]
    heading = np.where(np.isnan(axis), np.arctan2(v, u), axis)
    aspect, anvil = cells.view("aspect")[alive], cells.view("anvil")[alive]
    for k in range(alive.size):
        long_radius = radius[k] * aspect[k]
        # the anvil term reaches about 1.5 + 2 x 2.2 long radii ahead; the core is negligible beyond 4
        reach = 6.0 * long_radius
        window = _window(x[k], y[k], reach)
        if window is None:
            continue
        (r0, r1), (c0, c1) = window
        dx = (np.arange(c0, c1) + 0.5) * PIXEL_KM - x[k]
        dy = (np.arange(r0, r1) + 0.5) * PIXEL_KM - y[k]
        cos_h, sin_h = math.cos(heading[k]), math.sin(heading[k])
        along = dx[None, :] * cos_h + dy[:, None] * sin_h
        across = -dx[None, :] * sin_h + dy[:, None] * cos_h
        rho = np.sqrt((along / long_radius) ** 2 + (across / radius[k]) ** 2)
        core = np.exp(-rho ** 1.5)
        ahead = ((along - 1.5 * long_radius) / (2.2 * long_radius)) ** 2 + (across / (1.6 * radius[k])) ** 2
        field[r0:r1, c0:c1] += strength[k] * (core + anvil[k] * np.exp(-ahead))
    return field


def _window(x_km: float, y_km: float, reach_km: float):
    """Pixel row and column ranges within ``reach_km`` of a point, clipped to the patch; None if outside."""
    c0 = max(int((x_km - reach_km) / PIXEL_KM), 0)
    c1 = min(int((x_km + reach_km) / PIXEL_KM) + 1, GRID_SIZE)
    r0 = max(int((y_km - reach_km) / PIXEL_KM), 0)
    r1 = min(int((y_km + reach_km) / PIXEL_KM) + 1, GRID_SIZE)
    if c0 >= c1 or r0 >= r1:
        return None
    return (r0, r1), (c0, c1)


class _NoiseFields:
    """Correlated noise advected by the steering wind: stratiform structure and convective-core texture.

    Each field blends two independent spectral-noise fields with weights cos/sin of a slowly turning angle,
    which keeps unit variance while the pattern evolves (decorrelating over a few hours for stratiform,
    about an hour for the texture).
    """

    def __init__(self, rng: np.random.Generator):
        self.stratiform_pair = [spectral_noise(rng, _NOISE_SIZE, 3.0, 150.0) for _ in range(2)]
        self.texture_pair = [spectral_noise(rng, _NOISE_SIZE, 2.2, 20.0) for _ in range(2)]
        self.stratiform_period_min = rng.uniform(240.0, 480.0)
        self.texture_period_min = rng.uniform(50.0, 90.0)
        self.offset = rng.uniform(0, _NOISE_SIZE * PIXEL_KM, 2)

    def _sample(self, pair, period_min, displacement, t):
        from scipy.ndimage import map_coordinates

        pixel_centres = (np.arange(GRID_SIZE) + 0.5) * PIXEL_KM
        x = (pixel_centres[None, :] - displacement[0] + self.offset[0]) / PIXEL_KM
        y = (pixel_centres[:, None] - displacement[1] + self.offset[1]) / PIXEL_KM
        angle = 0.5 * math.pi * t / period_min
        blended = math.cos(angle) * pair[0] + math.sin(angle) * pair[1]
        return map_coordinates(blended, [y, x], order=1, mode="grid-wrap")

    def stratiform(self, displacement, t, threshold: float) -> np.ndarray:
        """(H, W) multiplicative stratiform pattern: 0 where the noise is below ``threshold`` (in standard
        deviations; 0 rains on half the area, 1.2 on about a ninth), rising to about 2 one and a half standard
        deviations above it."""
        g = self._sample(self.stratiform_pair, self.stratiform_period_min, displacement, t)
        return np.clip(g - threshold, 0.0, None) * 0.9

    def texture(self, displacement, t) -> np.ndarray:
        """(H, W) log-normal multiplicative texture of convective cores, mean 1."""
        g = np.clip(self._sample(self.texture_pair, self.texture_period_min, displacement, t), -2.5, 2.5)
        sigma = 0.25
        return np.exp(sigma * g - 0.5 * sigma ** 2)


class _System:
    """The organised part of a scene: where and when cells are triggered, and its stratiform region."""

    def __init__(self, scene: StormScene, rng: np.random.Generator, cells: _Cells):
        self.scene = scene
        self.rng = rng
        self.cells = cells
        t_mid = FRAME_COUNT // 2 * FRAME_MINUTES
        self.motion = self._system_motion()
        # start the system upstream so that it is near centre_km at the middle frame
        start = np.asarray(scene.centre_km) - self.motion * (t_mid + _SPIN_UP_MINUTES)
        self.origin = start + rng.normal(0.0, 12.0, 2)
        self.anchor = self.origin.copy()
        self.line_start = -_SPIN_UP_MINUTES - rng.uniform(0.0, 60.0)
        self.line_length = rng.uniform(160.0, 320.0)
        self.bow_centre = rng.uniform(-0.25, 0.25) * self.line_length
        self.bow_start = rng.uniform(20.0, 110.0)
        self.line_tilt = math.radians(rng.normal(0.0, 15.0))

    @classmethod
    def create(cls, scene: StormScene, rng: np.random.Generator, cells: _Cells) -> "_System":
        system = cls(scene, rng, cells)
        system._initial_cells()
        for _ in range(scene.scattered_cells):
            system._scattered_cell()
        return system

    # --- environment --------------------------------------------------------------------------------

    def instability(self, t: float) -> float:
        span = (FRAME_COUNT - 1) * FRAME_MINUTES
        return max(0.2, 1.0 + self.scene.instability_trend * min(max(t, 0.0), span) / span)

    def _system_motion(self) -> np.ndarray:
        """Velocity of the system as a whole (km min^-1): wind, plus propagation for lines and supercells."""
        u, v = self.scene.wind.mean_velocity(0.0)
        wind = np.array([float(u), float(v)])
        if self.scene.organisation == "squall_line":
            # a gust front propagates ahead of the cells that feed it
            return wind + 7.0 * _M_S_TO_KM_MIN * _unit(wind)
        if self.scene.organisation == "supercell":
            return wind + _bunkers_deviation(wind, right=True)
        if self.scene.organisation == "training":
            return 0.3 * wind
        return wind

    def _wind_at(self, x, y, t) -> np.ndarray:
        u, v = self.scene.wind.velocity(x, y, t)
        return np.array([float(u), float(v)])

    def _peak(self, t: float, scale: float = 1.0) -> float:
        return float(self.scene.peak_vil_kg_m2 * scale * self.instability(t) * self.rng.lognormal(0.0, 0.2))

    # --- triggering ---------------------------------------------------------------------------------

    def _ordinary(self, x, y, birth, peak, radius=None, dev_sd_m_s=1.5, growth=None) -> int:
        """An ordinary cell: 30-90 min life, 4-7 km core."""
        rng = self.rng
        growth = rng.uniform(10.0, 22.0) if growth is None else growth
        mature = rng.uniform(5.0, 25.0)
        decay = rng.uniform(15.0, 40.0)
        deviation = rng.normal(0.0, dev_sd_m_s * _M_S_TO_KM_MIN, 2)
        return self.cells.add(x, y, birth, peak, growth, mature, decay,
                              radius=rng.uniform(4.0, 7.0) if radius is None else radius,
                              aspect=rng.uniform(1.0, 1.5), anvil=rng.uniform(0.05, 0.15),
                              dev_u=deviation[0], dev_v=deviation[1])

    def _supercell(self, x, y, birth, peak, right=True) -> int:
        rng = self.rng
        wind = self._wind_at(x, y, max(birth, 0.0))
        deviation = _bunkers_deviation(wind, right=right)
        return self.cells.add(x, y, birth, peak, growth=rng.uniform(15.0, 25.0), mature=rng.uniform(60.0, 130.0),
                              decay=rng.uniform(25.0, 40.0), radius=rng.uniform(7.0, 10.0),
                              aspect=rng.uniform(1.3, 1.7), anvil=rng.uniform(0.2, 0.3),
                              dev_u=deviation[0], dev_v=deviation[1], kind=_Cells.SUPERCELL,
                              split_at=birth + rng.uniform(30.0, 60.0) if right and rng.random() < 0.5 else np.nan)

    def _initial_cells(self) -> None:
        rng, scene = self.rng, self.scene
        t0 = -_SPIN_UP_MINUTES
        if scene.organisation == "isolated":
            birth = rng.uniform(0.0, 60.0)
            self._ordinary(*(self.origin + self.motion * (birth - t0)), birth=birth, peak=self._peak(0.0))
        elif scene.organisation == "supercell":
            for k in range(rng.integers(1, 4)):
                offset = rng.normal(0.0, 35.0, 2) if k else np.zeros(2)
                self._supercell(*(self.origin + offset), birth=t0 + rng.uniform(-20.0, 40.0),
                                peak=self._peak(0.0, 1.2 if k == 0 else 0.9))
        elif scene.organisation == "multicell":
            for _ in range(rng.integers(2, 5)):
                x, y = self.origin + rng.normal(0.0, 15.0, 2)
                self._ordinary(x, y, birth=t0 + rng.uniform(-30.0, 20.0), peak=self._peak(0.0))
        elif scene.organisation == "training":
            for _ in range(rng.integers(2, 4)):
                x, y = self.origin + rng.normal(0.0, 12.0, 2)
                self._ordinary(x, y, birth=t0 + rng.uniform(-30.0, 10.0), peak=self._peak(0.0))

    def _scattered_cell(self) -> None:
        rng = self.rng
        birth = rng.uniform(-_SPIN_UP_MINUTES, (FRAME_COUNT - 1) * FRAME_MINUTES)
        x, y = rng.uniform(0.0, GRID_SIZE * PIXEL_KM, 2)
        strongest = 0.6 * self.scene.peak_vil_kg_m2
        # scattered cells peak at 3 kg m^-2 or more, unless the whole system is weaker than 5 kg m^-2
        weakest = 3.0 if strongest >= 3.0 else 0.5 * strongest
        self._ordinary(x, y, birth, peak=float(rng.uniform(weakest, strongest)), radius=rng.uniform(3.0, 5.5))

    def step(self, t: float, dt: float) -> None:
        """Advance the system from t to t + dt minutes: trigger, move, split and merge cells."""
        organisation = self.scene.organisation
        if organisation == "squall_line":
            self._trigger_line_cells(t, dt)
        elif organisation == "training":
            self._trigger_back_building(t, dt)
        if organisation in ("multicell", "supercell", "training"):
            self._trigger_flank_cells(t, dt)
        if organisation == "supercell":
            self._split_supercells(t)
        self._move(t, dt)
        self._merge(t)
        self.anchor = self.anchor + self.motion * dt

    def _move(self, t: float, dt: float) -> None:
        cells = self.cells
        if cells.count == 0:
            return
        x, y = cells.view("x"), cells.view("y")
        u, v = self.scene.wind.velocity(x, y, t)
        # cells scheduled for later (scattered pop-ups) wait where they will form
        born = cells.view("birth") <= t
        x += np.where(born, u + cells.view("dev_u"), 0.0) * dt
        y += np.where(born, v + cells.view("dev_v"), 0.0) * dt
        # an absorbed cell is drawn into the cell that swallowed it
        absorbed = np.flatnonzero(cells.view("absorbed_by") >= 0)
        if absorbed.size:
            target = cells.view("absorbed_by")[absorbed].astype(int)
            x[absorbed] += 0.35 * (x[target] - x[absorbed])
            y[absorbed] += 0.35 * (y[target] - y[absorbed])

    def _trigger_flank_cells(self, t: float, dt: float) -> None:
        """New cells where a mature cell's outflow meets the inflow: its right-forward flank (multicells),
        the rear-right flank of supercells (a flanking line that feeds the storm)."""
        cells, rng = self.cells, self.rng
        alive = np.flatnonzero(cells.alive(t))
        active = int(np.sum(cells.kind[alive] != _Cells.SUPERCELL)) if alive.size else 0
        for i in alive:
            age = t - cells.birth[i]
            if age < cells.growth[i] or age > cells.growth[i] + cells.mature[i] + 0.5 * cells.decay[i]:
                continue
            if cells.absorbed_by[i] >= 0 or active >= 14:
                continue
            supercell = cells.kind[i] == _Cells.SUPERCELL
            rate_per_min = (1 / 12.0 if supercell else 1 / 10.0) * self.instability(t)
            if rng.random() >= rate_per_min * dt:
                continue
            motion = self._wind_at(cells.x[i], cells.y[i], t) + np.array([cells.dev_u[i], cells.dev_v[i]])
            heading = math.atan2(motion[1], motion[0])
            if supercell:
                # rear-right (south-west of a storm moving east): the flanking line
                angle = heading + math.pi + math.radians(rng.normal(60.0, 20.0))
                distance = cells.radius[i] * rng.uniform(2.0, 3.0)
                scale = 0.45
            else:
                # forward-right (south-east of a cell moving east), at the gust front, whose radius grows
                # with the time since the cell matured
                angle = heading + math.radians(rng.normal(-70.0, 30.0))
                outflow = min(0.25 * (age - cells.growth[i]), 25.0)
                distance = cells.radius[i] * 1.5 + outflow
                scale = 0.95
            x = cells.x[i] + distance * math.cos(angle)
            y = cells.y[i] + distance * math.sin(angle)
            child = self._ordinary(x, y, t, peak=self._peak(t, scale), dev_sd_m_s=1.0)
            if supercell and child >= 0:
                cells.dev_u[child], cells.dev_v[child] = 0.8 * cells.dev_u[i], 0.8 * cells.dev_v[i]
            active += 1

    def _split_supercells(self, t: float) -> None:
        """A splitting storm: the right-mover continues, a weaker left-mover peels off."""
        cells = self.cells
        due = np.flatnonzero((cells.view("split_at") <= t) & cells.alive(t))
        for i in due:
            cells.split_at[i] = np.nan
            child = self._supercell(cells.x[i], cells.y[i], t, peak=float(cells.peak[i] * self.rng.uniform(0.5, 0.75)),
                                    right=False)
            if child >= 0:
                cells.mature[child] *= 0.5

    def _merge(self, t: float) -> None:
        """Cells whose cores overlap merge: the weaker is absorbed and fades, the stronger gains a part of it."""
        cells = self.cells
        candidates = np.flatnonzero(cells.alive(t) & (cells.view("absorbed_by") < 0))
        if candidates.size < 2:
            return
        strength = cells.strength(t)
        x, y = cells.x[candidates], cells.y[candidates]
        radius = cells.radius_at(t)[candidates]
        distance = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :])
        close = distance < 0.8 * (radius[:, None] + radius[None, :])
        np.fill_diagonal(close, False)
        for a, b in zip(*np.nonzero(np.triu(close))):
            i, j = candidates[a], candidates[b]
            if cells.absorbed_by[i] >= 0 or cells.absorbed_by[j] >= 0:
                continue
            weak, strong = (i, j) if strength[i] < strength[j] else (j, i)
            cells.absorbed_by[weak] = strong
            cells.absorbed_at[weak] = t
            # the survivor gains, up to a cap that keeps repeated mergers from running away
            gained = min(cells.peak[strong] + 0.3 * strength[weak], 1.3 * self.scene.peak_vil_kg_m2)
            cells.peak[strong] = max(cells.peak[strong], gained)
            # a merged core widens, but no core grows past a large supercell's
            cells.radius[strong] = min(cells.radius[strong] * 1.08, _MAX_CORE_RADIUS_KM)
            cells.mature[strong] += 8.0

    # --- squall line ----------------------------------------------------------------------------------

    def _line_frame(self, t: float):
        """Centre (km), along-line unit vector and forward normal of the gust front at time t."""
        motion = self.motion
        normal_angle = math.atan2(motion[1], motion[0]) + self.line_tilt
        normal = np.array([math.cos(normal_angle), math.sin(normal_angle)])
        along = np.array([-normal[1], normal[0]])
        return self.anchor, along, normal

    def _bow(self, s, t: float):
        """Forward bulge (km) of the gust front at along-line coordinate s: a bow echo growing after onset."""
        if not self.scene.bow_echo or t < self.bow_start:
            return np.zeros_like(np.asarray(s, dtype=float))
        amplitude = _BOW_KM * _smoothstep((t - self.bow_start) / 90.0)
        width = 0.15 * self.line_length
        return amplitude * np.exp(-0.5 * ((np.asarray(s, dtype=float) - self.bow_centre) / width) ** 2)

    def _line_maturity(self, t: float) -> float:
        return float(_smoothstep((t - self.line_start) / 60.0))

    def _trigger_line_cells(self, t: float, dt: float) -> None:
        """Cells form continuously along the gust front (about one per 10 km of line per cell lifetime) and
        then drift rearward relative to it, feeding the trailing stratiform region."""
        rng = self.rng
        if t < self.line_start:
            return
        centre, along, normal = self._line_frame(t)
        rate_per_min = self.line_length / 10.0 / 50.0 * self.instability(t)
        for _ in range(rng.poisson(rate_per_min * dt)):
            s = rng.uniform(-0.5, 0.5) * self.line_length
            bow = float(self._bow(s, t))
            behind = rng.uniform(0.0, 8.0)
            x, y = centre + s * along + (bow - behind) * normal
            end_taper = 1.0 - 0.5 * (2.0 * abs(s) / self.line_length) ** 2
            apex_boost = 1.0 + 0.4 * bow / _BOW_KM
            strength = self._peak(t, 0.8 * end_taper * apex_boost) * (0.4 + 0.6 * self._line_maturity(t))
            i = self._ordinary(x, y, t, peak=strength, radius=rng.uniform(4.0, 6.0), dev_sd_m_s=0.8,
                               growth=rng.uniform(8.0, 14.0))
            if i >= 0:
                # the line's cells ride with the gust front minus a rearward drift; cells in a bow also keep
                # up with its bulge, which grows by up to _BOW_KM over about 90 min
                wind = self._wind_at(x, y, t)
                ride = self.motion + (bow / 90.0) * normal - 3.0 * _M_S_TO_KM_MIN * normal - wind
                self.cells.dev_u[i] += ride[0]
                self.cells.dev_v[i] += ride[1]
                self.cells.aspect[i] = rng.uniform(1.5, 2.2)
                self.cells.axis[i] = math.atan2(along[1], along[0])

    def _front_coordinates(self, grid_x, grid_y, t):
        """Along-line coordinate and distance behind the (bowed) gust front, km, of every grid point."""
        centre, along, normal = self._line_frame(t)
        s = (grid_x - centre[0]) * along[0] + (grid_y - centre[1]) * along[1]
        n = (grid_x - centre[0]) * normal[0] + (grid_y - centre[1]) * normal[1]
        return s, self._bow(s, t) - n

    def line_band(self, grid_x: np.ndarray, grid_y: np.ndarray, t: float) -> np.ndarray:
        """(H, W) VIL (kg m^-2) of the near-continuous convective band just behind a squall line's gust front,
        between its discrete cells; zero for other organisations."""
        if self.scene.organisation != "squall_line" or t < self.line_start:
            return np.zeros_like(grid_x)
        s, behind = self._front_coordinates(grid_x, grid_y, t)
        band = np.exp(-0.5 * ((behind - 5.0) / 5.0) ** 2)
        ends = np.exp(-0.5 * (np.clip(np.abs(s) - 0.5 * self.line_length, 0.0, None) / 15.0) ** 2)
        return 0.15 * self.scene.peak_vil_kg_m2 * self._line_maturity(t) * band * ends

    # --- training / back-building ----------------------------------------------------------------------

    def _trigger_back_building(self, t: float, dt: float) -> None:
        """New cells keep forming near a slow-moving upstream point and are carried downstream along the
        same path (training): the flash-flood pattern."""
        rng = self.rng
        rate_per_min = (1 / 9.0) * self.instability(t)
        if rng.random() < rate_per_min * dt:
            x, y = self.anchor + rng.normal(0.0, 8.0, 2)
            self._ordinary(x, y, t, peak=self._peak(t), dev_sd_m_s=0.8)

    # --- stratiform -----------------------------------------------------------------------------------

    def stratiform(self, grid_x: np.ndarray, grid_y: np.ndarray, t: float) -> np.ndarray:
        """Envelope of stratiform VIL (kg m^-2) on the grid at time t, before the noise pattern.

        Squall lines: a band behind the gust front (after a transition zone of weaker echo), widening as the
        line matures. Training systems: a shield extending downstream of the back-building point. Other
        organisations: uniform, so that only the strongest patches of the noise pattern (see
        :meth:`_NoiseFields.stratiform`) rain, as scattered light showers.
        """
        amplitude = self.scene.stratiform_vil_kg_m2
        if amplitude <= 0:
            return np.zeros_like(grid_x)
        organisation = self.scene.organisation
        if organisation == "squall_line":
            s, behind = self._front_coordinates(grid_x, grid_y, t)
            depth = 40.0 + 60.0 * self._line_maturity(t)
            band = _smoothstep((behind - 8.0) / 20.0) * np.exp(-np.clip(behind - 30.0, 0.0, None) / depth)
            ends = np.exp(-0.5 * (np.clip(np.abs(s) - 0.5 * self.line_length, 0.0, None) / 30.0) ** 2)
            return amplitude * self._line_maturity(t) * band * ends
        if organisation == "training":
            wind = self._wind_at(*self.anchor, t)
            direction = _unit(wind)
            side = np.array([-direction[1], direction[0]])
            a = (grid_x - self.anchor[0]) * direction[0] + (grid_y - self.anchor[1]) * direction[1]
            b = (grid_x - self.anchor[0]) * side[0] + (grid_y - self.anchor[1]) * side[1]
            growth = 0.4 + 0.6 * _smoothstep((t + _SPIN_UP_MINUTES) / 150.0)
            shield = np.exp(-0.5 * ((a - 80.0) / 90.0) ** 2 - 0.5 * (b / 50.0) ** 2)
            return amplitude * growth * shield
        return np.full_like(grid_x, amplitude)


def _unit(vector) -> np.ndarray:
    vector = np.asarray(vector, dtype=float)
    norm = float(np.hypot(*vector))
    return vector / norm if norm > 0 else np.array([1.0, 0.0])


def _bunkers_deviation(wind: np.ndarray, right: bool) -> np.ndarray:
    """Supercell motion off the mean wind: 7.5 m s^-1 perpendicular to it (to the right for right-movers),
    the magnitude of Bunkers et al. (2000)'s method, with the mean wind standing in for the shear vector."""
    direction = _unit(wind)
    perpendicular = np.array([direction[1], -direction[0]]) if right else np.array([-direction[1], direction[0]])
    return 7.5 * _M_S_TO_KM_MIN * perpendicular
