"""``python -m capfilt``: the same command as the ``capfilt`` console script."""

import sys

from .pipeline.cli import main

sys.exit(main())
