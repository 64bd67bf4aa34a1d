"""Entry point of a local worker process (``direct_running_mode=multi_processing``): Beam's SDK harness, with
logging set up first so a worker prints errors only (warnings too with ``--verbose``) instead of its
start-up and shut-down chatter, and SIGINT/SIGTERM left to the launcher (``interrupt``). Beam's own
multi-process mode starts the same harness without this."""

from __future__ import annotations

import logging
import sys


def main(argv: list[str]) -> None:
    from .allocator import share_main_arena
    from .interrupt import ignore_signals

    ignore_signals()
    share_main_arena()  # the harness runs bundles, and so the models, in threads of its own
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING if "--verbose" in argv else logging.ERROR)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)  # before Beam's import, which logs a warning on a bare root logger
    from apache_beam.runners.worker import sdk_worker_main

    sdk_worker_main.main(argv)


if __name__ == "__main__":
    main(sys.argv)
