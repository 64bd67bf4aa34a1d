"""The model thread's allocations: on glibc every thread started after a run begins shares the main arena."""

import platform

import pytest

from capfilt.pipeline.allocator import share_main_arena


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")
def test_glibc_takes_the_one_arena_setting():
    assert share_main_arena() is True
