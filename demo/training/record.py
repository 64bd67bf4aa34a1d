"""``training.json``, written next to each trained demo model: its training settings and seconds, read back
when a later run reuses the model (``--captioner-from``, ``--filter-from``) so its card can say how it was made."""

from __future__ import annotations

import json
from pathlib import Path

TRAINING_RECORD = "training.json"


def write_record(directory: Path, **record) -> None:
    """``directory/training.json``: a model's training settings and seconds, for a later run that reuses it."""
    record["seconds"] = round(record["seconds"], 1)
    (directory / TRAINING_RECORD).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


def read_record(directory: Path) -> dict:
    path = directory / TRAINING_RECORD
    return json.loads(path.read_text()) if path.is_file() else {}
