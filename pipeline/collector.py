"""Python's cyclic garbage collector around start-up: paused while the heavy libraries import and the models
load, then told to leave what they made alone.

Importing Beam, torch and transformers makes ~800,000 objects and frees almost none, yet the allocations keep
triggering collections that walk them: 0.75 s of CPU in 3.1 s of imports and loading on this project's 2-core
machine, paid by every run. Collecting resumes once the long-lived objects are frozen, so later collections
(and the interpreter's final ones at exit) skip them too.
"""

from __future__ import annotations

import contextlib
import gc


@contextlib.contextmanager
def paused():
    """No automatic collections inside, until ``resume`` or ``settle``; on the way out (an error included) the
    collector is as it was."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def resume() -> None:
    """Collect automatically again (inside ``paused``, before its end)."""
    gc.enable()


def settle() -> None:
    """Move every object alive now out of the collector's sight (modules, models: they live as long as the
    process), then collect automatically again."""
    gc.freeze()
    gc.enable()
