"""Time budgets as people write them: ``90``, ``90s``, ``20m``, ``1.5h`` (light: no heavy imports)."""

from __future__ import annotations

import re

from transferkit.errors import ConfigError

_UNITS = {"": 1.0, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def parse_duration(text: str | float | int) -> float:
    """Seconds in ``text`` (a number of seconds, or a number followed by s, sec, m, min or h)."""
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-z]*)\s*", str(text).lower())
        if not match or match.group(2) not in _UNITS:
            raise ConfigError(f"option 'budget': {text!r} is not a duration; write seconds (600), or 90s, 20m, 1.5h.")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not seconds > 0:
        raise ConfigError(f"option 'budget' must be a positive duration; got {text!r}.")
    return seconds
