"""Runtime of the CCRL temporal concept localization service.

Everything needed to score lives here (frame format, pair features, bundle reader, scorer, stores,
HTTP API); nothing in this package imports torch, the ``training`` package or the ``ccrl`` command
line above it (tests/test_import_rules.py).
"""

__version__ = "0.1.0"
