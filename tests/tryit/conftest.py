"""Fixtures of the try-it tests: the app with the pages on, the shipped examples, a live server on a
loopback port for the browser, and a headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

from cds_service.settings import Settings
from cds_service.tryit.examples import DEFAULT_EXAMPLES_DIR, INDEX_FILE, Examples, load_examples
from cds_service.tryit.views import EXTENSION

# Every example in the index is written to be judged on this date, but one.
CLINICAL_DATE = date(2025, 7, 1)
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
# Debian's package; MYOCDS_CHROMIUM names another build of Chromium (never a downloaded one).
CHROMIUM = os.environ.get("MYOCDS_CHROMIUM", "/usr/bin/chromium")
_SKIPPED: list[str] = []  # why the browser tests were skipped, for the terminal summary
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def examples() -> Examples:
    return load_examples()


@pytest.fixture
def try_settings(settings: Settings) -> Settings:
    """Authentication off (so the pages are on), the date the examples are written for."""
    return settings.with_overrides(today=CLINICAL_DATE)


@pytest.fixture
def try_app(make_app: Callable[[Settings], Flask], try_settings: Settings) -> Flask:
    return make_app(try_settings)


@pytest.fixture
def try_client(try_app: Flask) -> Any:
    return try_app.test_client()


def use_examples(app: Flask, directory: Path) -> None:
    """Point a running app's pages at another examples directory (tests of the gallery)."""
    app.extensions[EXTENSION] = replace(
        app.extensions[EXTENSION], examples=load_examples(directory)
    )


@pytest.fixture
def reduced_examples(tmp_path: Path) -> Callable[[list[str]], Path]:
    """Writes an examples directory holding only the named shipped examples."""

    def write(names: list[str]) -> Path:
        directory = tmp_path / "examples"
        directory.mkdir()
        index = json.loads((DEFAULT_EXAMPLES_DIR / INDEX_FILE).read_text())
        index["examples"] = [e for e in index["examples"] if e["name"] in names]
        (directory / INDEX_FILE).write_text(json.dumps(index))
        for name in names:
            shutil.copy(DEFAULT_EXAMPLES_DIR / f"{name}.json", directory / f"{name}.json")
        return directory

    return write


class LiveServer:
    """The app served by werkzeug on 127.0.0.1 (a random port) in a thread."""

    def __init__(self, app: Flask) -> None:
        self.app = app  # the tests read its store (issued cards, feedback) after the page acted
        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> LiveServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say it loudly at the end of the run, not only in the skip reasons."""
    for message in dict.fromkeys(_SKIPPED):
        terminalreporter.write_sep("!", message, red=True, bold=True)


@pytest.fixture
def serve(make_app: Callable[[Settings], Flask]) -> Iterator[Callable[[Settings], LiveServer]]:
    """Serves an app with the given settings on a loopback port; stopped after the test."""
    servers: list[LiveServer] = []

    def start(settings: Settings) -> LiveServer:
        server = LiveServer(make_app(settings)).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright; never downloads a browser."""
    if not Path(CHROMIUM).exists():
        message = (
            f"BROWSER TESTS SKIPPED: {CHROMIUM} not found. Install it with "
            "'apt-get install -y chromium' (make test does this when it can)."
        )
        _SKIPPED.append(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Browser:
    """One browser tab, with every script error and failed request it met."""

    def __init__(self, context: Any) -> None:
        self.context = context
        self.page = context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        self.page.on("console", self._console)

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text}")


@pytest.fixture
def browser(chromium: Any) -> Iterator[Browser]:
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    yield Browser(context)
    context.close()


def screenshot(page: Any, name: str, *, full_page: bool = True) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path
