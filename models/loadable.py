"""``python -m capfilt.models.loadable ROLE NAME [ROLE NAME ...]``: whether each checkpoint loads for its role
with every weight and a processor (``base.check_loadable``). Exit 0 when all do; else the first problem on one
line of stdout and exit 2. The launcher runs it in a process of its own (``pipeline.preflight.check_weights``)."""

from __future__ import annotations

import sys

from .base import check_loadable
from .families import ModelRoleError


def main(argv: list[str]) -> int:
    for role, name in zip(argv[::2], argv[1::2], strict=True):
        try:
            check_loadable(role, name)
        except ModelRoleError as exc:
            print(exc)
            return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
