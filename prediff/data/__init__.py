"""Radar data: SEVIR / SEVIR-LR catalogs and HDF5 files, the demo storm corpus, radar import, dual-pol.

Nothing here imports MindSpore. Arrays are VIL pixels (uint8 0-255, 255 = missing) unless a name or
docstring says otherwise; :mod:`prediff.data.vil` holds the only conversions.
"""
