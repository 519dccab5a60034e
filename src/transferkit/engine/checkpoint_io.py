"""Checkpoint files written straight to disk.

Lightning's default writer serialises a whole checkpoint into memory before writing it (twice its size in RAM for a
moment: weights plus optimiser state, about 4x the model for AdamW). This one streams it into a temporary file
beside the target and renames it into place: as atomic, without the memory peak.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO


class StreamingCheckpointIO(TorchCheckpointIO):
    """:class:`TorchCheckpointIO` whose ``save_checkpoint`` writes through a temporary file and ``os.replace``."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("storage_options are not supported by StreamingCheckpointIO")
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                torch.save(checkpoint, handle)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
