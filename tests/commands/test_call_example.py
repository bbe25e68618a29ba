"""``myocds call --example NAME``: a shipped example moved to the service's date gives the cards it
was written for on any day; a reader that leaves early (``| head``) ends the command quietly."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from flask import Flask

from cds_service.cli import main
from cds_service.settings import Settings
from cds_service.tryit.examples import load_examples
from tests.support.served import on_loopback

REPO_ROOT = Path(__file__).resolve().parents[2]
# A date none of the examples is written for: their records must move to it.
SERVICE_TODAY = date(2031, 3, 17)


@pytest.fixture
def url(settings: Settings, make_app: Callable[[Settings], Flask]) -> Iterator[str]:
    with on_loopback(make_app(settings.with_overrides(today=SERVICE_TODAY))) as served:
        yield served


def printed_pairs(output: str) -> set[tuple[str, str]]:
    """(topic, indicator) of every card line: "[WARNING] summary  (DOSE-02)"."""
    pairs = set()
    for line in output.splitlines():
        if line.startswith("[") and line.endswith(")"):
            pairs.add((line[line.rindex("(") + 1:-1], line[1:line.index("]")].lower()))
    return pairs


@pytest.mark.parametrize("name", load_examples().names())
def test_each_example_gives_its_cards_on_the_services_date(
    name: str, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    example = load_examples().get(name)
    status = main(["call", "--example", name, "--url", url, "--today", SERVICE_TODAY.isoformat()])
    out = capsys.readouterr().out
    assert status == 0, out
    assert {(e.topic, e.indicator) for e in example.expect} <= printed_pairs(out), out
    shift = (SERVICE_TODAY - example.today).days
    assert f"moved by {shift} days to {SERVICE_TODAY}" in out


def test_the_date_defaults_to_myocds_today(
    url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MYOCDS_TODAY", SERVICE_TODAY.isoformat())
    assert main(["call", "--example", "statin-ck-over-10x", "--url", url]) == 0
    assert ("STAT-01", "critical") in printed_pairs(capsys.readouterr().out)
    # Moved to a year before the service's date, the CK is a year old when the service judges
    # it: not recent, no card. So the client's date is the one the record was moved to.
    later = (SERVICE_TODAY - timedelta(days=365)).isoformat()
    monkeypatch.setenv("MYOCDS_TODAY", later)
    assert main(["call", "--example", "statin-ck-over-10x", "--url", url]) == 0
    assert ("STAT-01", "critical") not in printed_pairs(capsys.readouterr().out)


def test_an_example_on_another_hook_carries_its_drafted_order(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # statin-ck-4-to-10x is written for order-select with atorvastatin 40 mg drafted.
    args = ["call", "--example", "statin-ck-4-to-10x", "--url", url, "--today", "2031-03-17"]
    assert main([*args, "--hook", "order-sign"]) == 0
    out = capsys.readouterr().out
    assert ("STAT-03", "warning") in printed_pairs(out)
    assert "statin-order-check" in out and "statin-order-select" not in out


def test_unusable_arguments_say_why(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["call", "--example", "no-such-patient", "--url", url]) == 2
    err = capsys.readouterr().err
    assert "no example 'no-such-patient'" in err and "statin-ck-over-10x" in err
    record = REPO_ROOT / "examples" / "statin-ck-over-10x.json"
    assert main(["call", "--record", str(record), "--url", url]) == 2
    assert "--record needs --hook" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: one patient, not both
        main(["call", "--record", str(record), "--example", "statin-ck-over-10x"])


def test_a_reader_that_leaves_early_ends_the_command_without_a_traceback(url: str) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "cds_service.cli", "call", "--example", "statin-ck-over-10x",
         "--url", url, "--today", SERVICE_TODAY.isoformat()],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO_ROOT,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # as `| head` does once it has its lines: every write now fails
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=60) == 141, stderr  # 128 + SIGPIPE, as a shell reports it
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr


def test_a_shell_pipe_into_head_prints_the_first_lines_only(url: str) -> None:
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c",
         f"{sys.executable} -m cds_service.cli call --example first-ivig-no-iga --url {url} "
         f"--today {SERVICE_TODAY} | head -n 2"],
        capture_output=True, text=True, timeout=60, cwd=REPO_ROOT,
    )
    assert len(done.stdout.splitlines()) == 2
    assert "Traceback" not in done.stderr and "Error" not in done.stderr, done.stderr
