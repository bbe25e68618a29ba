"""A copy of the repository with nothing beside it (no ``shared/`` folder, no
``MYOCDS_SCENARIOS_DIR``) still runs the scenario tests: the project's own set, every file of it,
and nothing else."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.served import clean_env

REPO_ROOT = Path(__file__).resolve().parents[2]
OWN = REPO_ROOT / "tests" / "scenarios"
SCENARIO_TEST = "tests/test_conformance.py::test_scenario"


@pytest.fixture(scope="module")
def alone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The working tree's files (tracked, and new ones git does not ignore) in a folder whose
    parent holds nothing else."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")
    copy = tmp_path_factory.mktemp("alone") / "myocds"
    for name in filter(None, listed):
        source = REPO_ROOT / name
        if not source.exists() and not source.is_symlink():
            continue  # deleted in the working tree, not yet in the index
        target = copy / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(source.readlink())
        else:
            shutil.copy2(source, target)
    assert sorted(p.name for p in copy.parent.iterdir()) == ["myocds"]
    return copy


def _pytest(copy: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-o", "addopts=", "-p", "no:randomly", "-p",
         "no:cacheprovider", *args],
        cwd=copy, env=clean_env(), capture_output=True, text=True, timeout=600,
    )


def test_the_scenario_tests_collect_the_own_set_alone(alone: Path) -> None:
    done = _pytest(alone, "-q", "--collect-only", SCENARIO_TEST)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ids = re.findall(r"::test_scenario\[(.+)\]$", done.stdout, re.M)
    scenarios = {i.split("-", 1)[1] if i.startswith(("prefetch-", "fetch-")) else i for i in ids}
    scenarios = {re.sub(r"-(prefetch|fetch)$", "", s) for s in scenarios}
    own = {f"own/{p.stem}" for p in OWN.glob("*.json")}
    assert own and scenarios == own, sorted(scenarios ^ own)[:10]


def test_the_scenario_tests_run_and_pass_alone(alone: Path) -> None:
    done = _pytest(alone, "-q", SCENARIO_TEST, "-k", "prefetch")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    passed = re.search(r"(\d+) passed", done.stdout)
    assert passed and int(passed.group(1)) == len(list(OWN.glob("*.json"))), done.stdout[-2000:]
