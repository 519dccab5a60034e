"""The built-in adaptation methods' registry entries, one module each (see
:mod:`transferkit.strategies.adaptation.registry`)."""
