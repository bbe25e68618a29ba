"""myocds serve limits glibc's malloc arenas before forking (commands/serve.limit_malloc_arenas)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from cds_service.commands.serve import MALLOC_ARENAS, limit_malloc_arenas

# Eight threads allocating at once, then glibc's malloc_stats() (one "Arena n:" block per arena,
# on stderr). Without a limit glibc gives contending threads arenas of their own.
_ALLOCATE = textwrap.dedent(
    """
    import ctypes, sys, threading
    from cds_service.commands.serve import limit_malloc_arenas
    if sys.argv[1] == "limit":
        assert limit_malloc_arenas()
    def work():
        keep = []
        for i in range(20000):
            keep.append(bytearray(2000 + i % 5000))
            if len(keep) > 200:
                keep.clear()
    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ctypes.CDLL("libc.so.6").malloc_stats()
    """
)


def _arenas(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    done = subprocess.run(
        [sys.executable, "-c", _ALLOCATE, mode], capture_output=True, text=True, env=env,
        timeout=60, check=True,
    )
    return sum(1 for line in done.stderr.splitlines() if line.startswith("Arena "))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc arenas")
def test_threads_share_at_most_the_limited_arenas() -> None:
    assert 1 <= _arenas("limit") <= MALLOC_ARENAS


def test_the_environment_setting_wins() -> None:
    assert limit_malloc_arenas({"MALLOC_ARENA_MAX": "4"}) is False
