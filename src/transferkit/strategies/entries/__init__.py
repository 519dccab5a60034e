"""The built-in strategies' registry entries, one module each (see :mod:`transferkit.strategies.registry`)."""
