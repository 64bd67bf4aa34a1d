"""``python -m capfilt``: the same command as the ``capfilt`` console script."""

import os
import sys

# `python -m` puts the working directory first on sys.path, so a user's own select.py or json.py there would
# replace the standard library's for everything imported next (Beam imports select). pip's __main__ drops the
# entry for the same reason; the console script never has it.
if sys.path and os.path.abspath(sys.path[0] or ".") == os.getcwd():
    sys.path.pop(0)

from .cli import main  # noqa: E402

sys.exit(main())
