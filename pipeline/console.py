"""What a run prints: capfilt's own lines on stderr, third-party warnings only with ``-v``.

Set before Beam, torch or transformers are imported (Beam logs a warning on import) and through environment
variables as well, which local worker processes inherit.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

QUIET_ENVIRONMENT = {
    "TRANSFORMERS_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TOKENIZERS_PARALLELISM": "false",  # else tokenizers warns in every forked process
    "PYTHONWARNINGS": "ignore",
    "GRPC_VERBOSITY": "ERROR",
}


VERBOSE = False


def configure(verbose: bool) -> None:
    global VERBOSE
    VERBOSE = verbose
    if not verbose:
        for key, value in QUIET_ENVIRONMENT.items():
            os.environ.setdefault(key, value)
        warnings.simplefilter("ignore")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s" if not verbose else "%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.WARNING if verbose else logging.ERROR)
    logging.getLogger("capfilt").setLevel(logging.INFO)
    # Per-shard lines are for cluster worker logs; a local run prints summed progress instead.
    logging.getLogger("capfilt.worker").setLevel(logging.INFO if verbose else logging.WARNING)


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
