"""The wheel alone serves: built from a copy of the sources, installed into a fresh venv outside
the source tree, served from an empty directory, every hook called.

No network: the wheel is built with this venv's setuptools (``--no-build-isolation``), installed
with ``--no-deps --no-index``, and the fresh venv sees this venv's dependencies through a
``.pth`` line (a path line only: the editable install's own ``.pth`` hook there is not run, so
``cds_service`` can come from nowhere but the wheel).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cds_service.services import SERVICES
from tests.support.served import clean_env, free_port, get, serving

REPO_ROOT = Path(__file__).resolve().parents[2]
# What a wheel is built from; the rest of a checkout (tests, venv, git, bench) stays behind.
SOURCES = ("pyproject.toml", "README.md", "MANIFEST.in", "cds_service", "cards", "fhir_mappings",
           "examples")


def _run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, **kwargs)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{' '.join(argv)}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        origin = REPO_ROOT / name
        if origin.is_dir():
            shutil.copytree(origin, source / name, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(origin, source / name)
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
          "--no-index", "--quiet", "-w", str(out)], cwd=source)
    (built,) = out.glob("myocds-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("venv") / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(home)])
    python = home / "bin" / "python"
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                   env=clean_env()).stdout.strip()
    (Path(purelib) / "_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
          "--no-index", "--quiet", str(wheel)], env=clean_env())
    return home


def _package_files() -> set[str]:
    """Every file of the package in the checkout, through the links in cds_service/data/."""
    found = set()
    for folder, dirs, files in os.walk(REPO_ROOT / "cds_service", followlinks=True):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            if not name.endswith(".pyc"):
                path = Path(folder, name).relative_to(REPO_ROOT)
                found.add(path.as_posix())
    return found


def test_the_wheel_carries_every_file_of_the_package(wheel: Path) -> None:
    names = {n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("cds_service/")}
    expected = _package_files()
    assert {"cds_service/data/cards/STAT-01.json", "cds_service/data/examples/index.json",
            "cds_service/data/fhir_mappings/ValueSet-statin.json"} <= expected
    assert sorted(expected - names) == [], "add them to [tool.setuptools.package-data]"
    assert sorted(names - expected) == []


def test_the_installed_package_is_the_wheels(venv: Path, tmp_path: Path) -> None:
    found = _run(
        [str(venv / "bin" / "python"), "-c",
         "import cds_service, cds_service.packaged as p; print(cds_service.__file__); "
         "print(p.data_dir('cards'))"],
        cwd=tmp_path, env=clean_env(),
    ).stdout.split()
    for path in found:
        assert Path(path).is_relative_to(venv), path
        assert not Path(path).is_relative_to(REPO_ROOT), path


@pytest.fixture(scope="module")
def served(venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    cwd = tmp_path_factory.mktemp("run")  # no cards/ or examples/ here: only the package's
    port = free_port()
    env = clean_env(MYOCDS_AUTH="off", MYOCDS_PORT=str(port), MYOCDS_WORKERS="1",
                    MYOCDS_THREADS="4", MYOCDS_LOG_LEVEL="WARNING")
    with serving([str(venv / "bin" / "myocds"), "serve"], port=port, cwd=cwd, env=env,
                 log=cwd / "serve.log"):
        yield port, cwd


def test_discovery_announces_every_service(served: tuple[int, Path]) -> None:
    port, _ = served
    status, body = get(port, "/cds-services")
    assert status == 200
    announced = {(s["id"], s["hook"]) for s in json.loads(body)["services"]}
    assert announced == {(s.id, s.hook) for s in SERVICES}


def _first_example_of(hook: str) -> dict[str, object]:
    index = json.loads((REPO_ROOT / "examples" / "index.json").read_text(encoding="utf-8"))
    return next(e for e in index["examples"] if e["hook"] == hook)


@pytest.mark.parametrize("hook", sorted({s.hook for s in SERVICES}))
def test_every_service_of_each_hook_answers_with_its_cards(
    hook: str, served: tuple[int, Path], venv: Path
) -> None:
    port, cwd = served
    example = _first_example_of(hook)
    done = _run([str(venv / "bin" / "myocds"), "call", "--example", str(example["name"]),
                 "--url", f"http://127.0.0.1:{port}"], cwd=cwd, env=clean_env())
    answered = set(re.findall(r"^== .* \(([a-z-]+)\): \d+ cards?$", done.stdout, re.M))
    assert answered == {s.id for s in SERVICES if s.hook == hook}, done.stdout
    topics = set(re.findall(r"  \(([A-Z]+-\d+)\)$", done.stdout, re.M))
    expected = {e["topic"] for e in example["expect"]}  # type: ignore[attr-defined]
    assert expected and expected <= topics, done.stdout
