"""The never-rules of the conventions, checked from the imports (``ast``, every import statement
of every module of a room, including those inside functions):

- ``advice`` imports neither ``protocol``, ``fhir`` nor the store;
- ``record`` imports neither ``protocol`` nor ``advice``;
- ``fhir`` imports neither ``advice`` nor ``protocol`` (it takes plain values such as the
  allowed bases, not a caller object);
- ``cards_render`` does not import ``fhir``.

``fhir.resources`` (the FHIR model library) is not our ``fhir`` room: only ``cds_service.*``
imports count.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "cds_service"

# room -> the modules (and their submodules) it must never import
NEVER: dict[str, tuple[str, ...]] = {
    "advice": ("cds_service.protocol", "cds_service.fhir", "cds_service.protocol.store"),
    "record": ("cds_service.protocol", "cds_service.advice"),
    "fhir": ("cds_service.advice", "cds_service.protocol"),
    "cards_render": ("cds_service.fhir",),
}


def imported_modules(source: str, module: str) -> set[str]:
    """Every module ``source`` (the text of ``module``) imports, relative imports resolved; for
    ``from a import b`` both ``a`` and ``a.b`` (b may be a submodule)."""
    found: set[str] = set()
    package = module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            found.add(name)
            found.update(f"{name}.{alias.name}" for alias in node.names)
    return found


def banned(name: str, room: str) -> bool:
    return any(name == never or name.startswith(never + ".") for never in NEVER[room])


def breaches(room: str) -> list[str]:
    """"<file>: imports <module>" for every forbidden import in ``room``."""
    found = []
    for path in sorted((PACKAGE / room).rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(relative.parts)
        if path.name == "__init__.py":
            module += ".__init__"
        for name in sorted(imported_modules(path.read_text(encoding="utf-8"), module)):
            if banned(name, room):
                found.append(f"{relative}.py: imports {name}")
    return found


@pytest.mark.parametrize("room", sorted(NEVER))
def test_room_keeps_its_never_rules(room: str) -> None:
    assert breaches(room) == []


def test_the_check_sees_every_form_of_import() -> None:
    module = "cds_service.cards_render.render"
    source = (
        "import cds_service.fhir.gather\n"
        "from cds_service.fhir import elements\n"
        "from ..fhir.terminology import SNOMED\n"
        "def late():\n    from cds_service.fhir.elements import as_text\n"
        "from fhir.resources.R4B.servicerequest import ServiceRequest\n"
    )
    names = imported_modules(source, module)
    assert {
        "cds_service.fhir.gather",
        "cds_service.fhir.elements",
        "cds_service.fhir.terminology",
        "cds_service.fhir.elements.as_text",
    } <= names
    assert "fhir.resources.R4B.servicerequest" in names
    assert [n for n in sorted(names) if banned(n, "cards_render")] == [
        "cds_service.fhir",
        "cds_service.fhir.elements",
        "cds_service.fhir.elements.as_text",
        "cds_service.fhir.gather",
        "cds_service.fhir.terminology",
        "cds_service.fhir.terminology.SNOMED",
    ]


def test_a_breach_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    room = tmp_path / "cds_service" / "advice"
    room.mkdir(parents=True)
    (room / "bad.py").write_text("from cds_service.protocol.store import Store\n")
    monkeypatch.setattr(f"{__name__}.PACKAGE", tmp_path / "cds_service")
    assert breaches("advice") == [
        "cds_service/advice/bad.py: imports cds_service.protocol.store",
        "cds_service/advice/bad.py: imports cds_service.protocol.store.Store",
    ]
