"""The knowledge the package ships as data: card templates, FHIR mappings, example patients.

They are edited at the top of the repository (``cards/``, ``fhir_mappings/``, ``examples/``) and
reach the package through symbolic links in ``cds_service/data/`` that the wheel build follows
(``pyproject.toml`` package-data; docs/packaging.md says why). So one reading through
``importlib.resources`` finds the same files in a checkout, an editable install and a wheel.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from cds_service.errors import ConfigurationError

PACKAGE = "cds_service"
DATA = "data"


def data_dir(name: str) -> Path:
    """The shipped directory ``name`` (``cards``, ``fhir_mappings`` or ``examples``) as a path.

    The loaders read whole directories (glob, file dates), so the package must be installed as
    files, which pip always does; a zipped import is refused with a message, not a traceback."""
    found = resources.files(PACKAGE).joinpath(DATA, name)
    if not isinstance(found, Path):
        raise ConfigurationError(
            f"{PACKAGE} is not installed as files ({type(found).__name__}); install it with pip"
        )
    return found.resolve()
