"""The collector is paused only while a run starts: whatever happens, the process collects again afterwards."""

import gc

import pytest

from capfilt.cli import main
from capfilt.pipeline import collector
from tests.helpers import run


def test_paused_restores_the_collector_even_on_an_error():
    assert gc.isenabled()
    with pytest.raises(RuntimeError), collector.paused():
        assert not gc.isenabled()
        raise RuntimeError
    assert gc.isenabled()


def test_settle_freezes_what_is_alive_and_collects_again():
    frozen = gc.get_freeze_count()
    kept = [[i] for i in range(1000)]
    with collector.paused():
        collector.settle()
        assert gc.isenabled()
    assert gc.get_freeze_count() >= frozen + len(kept)
    gc.unfreeze()  # the rest of the suite collects as it did


def test_a_run_leaves_the_collector_on_whether_it_worked_or_was_refused(tiny_models, shards, tmp_path):
    assert main(["run", "demo", "--set", "runtime.dtype=half"]) == 2
    assert gc.isenabled()
    assert run(tiny_models, shards, tmp_path / "out") == 0
    assert gc.isenabled()
