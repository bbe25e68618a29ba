"""The README's commands, run in order as a new user runs them after ``make run``, each giving what
the README says it gives.

Every ```` ```sh ```` block is run (one bash session, so variables carry from block to block),
except one preceded by ``<!-- not run by tests/test_readme.py: <why> -->``. A ```` ```text ````
block that follows a command block (before the next one) is what it prints: each of its lines must
appear in the output, in order, ``…`` standing for any text. Inside the blocks:

- ``make run`` (with any ``VAR=value`` before it) starts the service as written, in the
  repository, and a later one restarts it; ``make test`` is this suite and is not run again;
- the service's port 8080 becomes a free port (``MYOCDS_PORT``, which ``make run`` and
  ``myocds call`` both read, and in the URLs), and the FHIR server on 8090 the loopback FHIR test
  server; the feedback store is a fresh SQLite file, not ``./var/``.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.fhir_server import FhirTestServer
from tests.support.served import clean_env, free_port, serving

REPO_ROOT = Path(__file__).resolve().parents[1]
README = REPO_ROOT / "README.md"
NOT_RUN = re.compile(r"<!-- not run by tests/test_readme\.py: (.+?) -->")
MAKE_RUN = re.compile(r"^((?:[A-Z_]+=\S+ +)*)make run\b")
COMMAND_TIMEOUT = 120.0


@dataclass
class Block:
    line: int
    text: str
    expected: list[str] = field(default_factory=list)
    skipped: str | None = None


def readme_blocks(text: str) -> list[Block]:
    """The ``sh`` blocks in order, each with the ``text`` block that shows its output."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        fence = re.match(r"^(\s*)```(\w*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        indent, kind = fence.groups()
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
        body = [line[len(indent):] for line in lines[i + 1:end]]
        if kind == "sh":
            before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            reason = NOT_RUN.search(before)
            blocks.append(Block(i + 1, "\n".join(body), skipped=reason and reason.group(1)))
        elif kind == "text" and blocks and not blocks[-1].expected:
            blocks[-1].expected = [line for line in body if line.strip()]
        i = end + 1
    return blocks


def _pattern(expected: str) -> re.Pattern[str]:
    return re.compile(".*?".join(re.escape(part) for part in expected.split("…")))


def assert_prints(output: str, expected: list[str], where: str) -> None:
    lines = output.splitlines()
    position = 0
    for wanted in expected:
        pattern = _pattern(wanted)
        found = next((k for k in range(position, len(lines)) if pattern.search(lines[k])), None)
        assert found is not None, f"{where}: no line like {wanted!r} (in order) in:\n{output}"
        position = found + 1


class Shell:
    """One bash session: each chunk's output up to a marker line with its exit status."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            ["bash", "--noprofile", "--norc"], cwd=REPO_ROOT, env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        self.run("exec 2>&1")

    def run(self, script: str) -> tuple[int, str]:
        assert self.process.stdin is not None and self.process.stdout is not None
        marker = f"__README_STEP_{uuid.uuid4().hex}__"
        self.process.stdin.write(f"{script}\nprintf '\\n{marker} %s\\n' \"$?\"\n")
        self.process.stdin.flush()
        output: list[str] = []
        for line in self.process.stdout:  # bounded: every step ends with the marker
            if line.startswith(marker):
                return int(line.split()[1]), "".join(output).rstrip("\n")
            output.append(line)
        raise AssertionError(f"bash ended during:\n{script}\n{''.join(output)}")

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        self.process.wait(timeout=30)


def _steps(block: Block) -> Iterator[tuple[str, str]]:
    """("make-run", env prefix) / ("skip", line) / ("shell", chunk) in the block's order; a line
    that continues the one before (backslash, open quote) stays in its chunk."""
    chunk: list[str] = []

    def continues() -> bool:
        text = "\n".join(chunk)
        return bool(chunk) and (text.endswith("\\") or text.count("'") % 2 == 1)

    for line in block.text.splitlines():
        command = line.split("#", 1)[0].strip()
        if not continues():
            started = MAKE_RUN.match(command)
            if started or command.startswith("make test"):
                if chunk:
                    yield "shell", "\n".join(chunk)
                    chunk = []
                yield ("make-run", started.group(1)) if started else ("skip", line)
                continue
        chunk.append(line)
    if chunk:
        yield "shell", "\n".join(chunk)


def _substitute(text: str, port: int, fhir: FhirTestServer) -> str:
    return text.replace("127.0.0.1:8080", f"127.0.0.1:{port}").replace(
        "http://127.0.0.1:8090/fhir", fhir.base_url
    )


@pytest.fixture
def fhir() -> Iterator[FhirTestServer]:
    server = FhirTestServer().start()
    yield server
    server.stop()


def test_the_readme_commands_give_what_the_readme_says(
    tmp_path: Path, fhir: FhirTestServer
) -> None:
    blocks = readme_blocks(README.read_text(encoding="utf-8"))
    assert blocks[0].text.splitlines()[0].startswith("make run")  # the set-up comes first
    assert sum(1 for b in blocks if b.skipped) <= 1, [b.line for b in blocks if b.skipped]
    port = free_port()
    env = clean_env(
        MYOCDS_PORT=str(port), MYOCDS_WORKERS="1", MYOCDS_LOG_LEVEL="WARNING",
        MYOCDS_DATABASE_URL=f"sqlite:///{tmp_path / 'readme.sqlite3'}", NO_COLOR="1",
    )
    shell = Shell(env)
    ran = 0
    with contextlib.ExitStack() as server:
        try:
            for block in blocks:
                if block.skipped:
                    continue
                output: list[str] = []
                for kind, step in _steps(block):
                    if kind == "make-run":
                        server.close()  # as Ctrl-C in the first terminal
                        extra = dict(v.split("=", 1) for v in step.split())
                        extra = {k: _substitute(v, port, fhir) for k, v in extra.items()}
                        server.enter_context(serving(
                            ["make", "run"], port=port, cwd=REPO_ROOT, env={**env, **extra},
                            log=tmp_path / f"make-run-{block.line}.log",
                        ))
                    elif kind == "shell":
                        status, printed = shell.run(_substitute(step, port, fhir))
                        assert status == 0, f"README line {block.line}: exit {status}:\n{printed}"
                        assert "Traceback" not in printed, f"README line {block.line}:\n{printed}"
                        output.append(printed)
                        ran += 1
                assert_prints("\n".join(output), block.expected, f"README line {block.line}")
        finally:
            shell.close()
    assert ran >= 8


def test_every_command_is_spelt_as_it_runs_after_make_run() -> None:
    for block in readme_blocks(README.read_text(encoding="utf-8")):
        for match in re.finditer(r"(\S*)\bmyocds (serve|call|rules|feedback-report)", block.text):
            assert match.group(1).endswith(".venv/bin/"), f"README line {block.line}: {match[0]}"


def _settings_read() -> set[str]:
    source = (REPO_ROOT / "cds_service" / "settings.py").read_text(encoding="utf-8")
    return set(re.findall(r'"(MYOCDS_[A-Z0-9_]+)"', source))


def test_each_setting_is_in_the_settings_table_once() -> None:
    text = README.read_text(encoding="utf-8")
    table = text.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(MYOCDS_[A-Z0-9_]+)` \|", table, re.M)
    assert sorted(r for r in set(rows) if rows.count(r) > 1) == []
    assert sorted(_settings_read() - set(rows)) == []
    assert sorted(set(rows) - _settings_read()) == []


def test_the_readme_names_the_extras_the_rules_command_and_metrics_once() -> None:
    text = README.read_text(encoding="utf-8")
    assert "`postgres`" in text and "`test`" in text
    assert ".venv/bin/myocds rules" in text
    endpoints = text.split("\n## Endpoints\n", 1)[1].split("\n## ", 1)[0]
    assert len(re.findall(r"^\| `GET /metrics` \|", endpoints, re.M)) == 1
    assert not re.search(r"\.\./shared", text)  # the repository stands on its own
