"""Pictures of radar fields: the SEVIR VIL colour scale, offline basemap outlines, plotly maps, GIF / PNG export.

* :mod:`~prediff.viz.colormap` — the SEVIR VIL levels and colours (plotly and matplotlib forms);
* :mod:`~prediff.viz.basemap` — Natural Earth coastlines and borders projected onto a radar grid, offline;
* :mod:`~prediff.viz.maps` — animated, georeferenced plotly maps (VIL, multi-panel, probability, event locations);
* :mod:`~prediff.viz.animation` — animated GIF and PNG strips of a VIL sequence, as bytes.

Nothing here imports MindSpore or Streamlit; inputs are VIL pixels (uint8 0-255, 255 = missing) on a
:class:`prediff.data.geo.Grid` unless a docstring says otherwise.
"""
