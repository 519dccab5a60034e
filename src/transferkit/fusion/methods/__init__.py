"""The built-in fusion methods' registry entries, one module each (see :mod:`transferkit.fusion.registry`)."""
