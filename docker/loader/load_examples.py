"""Load the shipped example patients into a FHIR R4 server (the compose stack's HAPI), one
transaction Bundle per patient, with every date moved to today as the try-it page moves them, so
that ``myocds call --example NAME --no-prefetch --fhir-server URL`` finds a record the service
fetches and judges as written.

The examples reuse resource ids between patients (``ck-2`` in several records): on the server,
every resource but the Patient is stored as ``<patient id>-<id>`` and the references to it are
rewritten, so the patients do not overwrite each other. Entries are PUTs (update as create), so a
second run replaces what the first loaded. An example whose record is not valid R4 on purpose
(flawed data as some EHRs send it) is skipped, saying so.

    python load_examples.py --fhir-server http://hapi:8080/fhir [--wait 300] [--today YYYY-MM-DD]

Exit status 0 when every patient was loaded, 1 when the server refused one, 2 when it could not be
reached within --wait seconds.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Mapping
from datetime import date
from typing import Any

import requests

from cds_service.tryit.examples import Example, load_examples, record_on

FHIR_JSON = "application/fhir+json"
TIMEOUT_SECONDS = 30.0


def _rewrite_references(value: Any, renamed: Mapping[str, str]) -> Any:
    if isinstance(value, dict):
        out = {k: _rewrite_references(v, renamed) for k, v in value.items()}
        reference = out.get("reference")
        if isinstance(reference, str) and reference in renamed:
            out["reference"] = renamed[reference]
        return out
    if isinstance(value, list):
        return [_rewrite_references(v, renamed) for v in value]
    return value


def transaction_bundle(example: Example, today: date) -> dict[str, Any]:
    """The example's record on ``today`` as an R4 transaction Bundle of PUTs."""
    record = record_on(example, today)
    patient_id = example.patient_id
    resources = [entry["resource"] for entry in record["entry"]]
    renamed = {
        f"{r['resourceType']}/{r['id']}": f"{r['resourceType']}/{patient_id}-{r['id']}"
        for r in resources
        if r["resourceType"] != "Patient" and isinstance(r.get("id"), str)
    }
    entries = []
    for resource in resources:
        resource = _rewrite_references(resource, renamed)
        key = f"{resource['resourceType']}/{resource.get('id')}"
        if key in renamed:
            resource["id"] = renamed[key].split("/", 1)[1]
        url = f"{resource['resourceType']}/{resource['id']}"
        entries.append({"resource": resource, "request": {"method": "PUT", "url": url}})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def r4_problem(bundle: Mapping[str, Any]) -> str | None:
    """Why ``bundle`` is not a valid R4 transaction (fhir.resources, the gate the service uses),
    or None. Some examples hold deliberately flawed resources, as EHRs send them, that the
    service reads leniently from a prefetch but a FHIR server may refuse to store."""
    from fhir.resources.R4B.bundle import Bundle

    try:
        Bundle.parse_obj(bundle)
    except ValueError as exc:  # pydantic's ValidationError
        errors = exc.errors() if hasattr(exc, "errors") else [exc]
        return f"{len(errors)} R4 validation error(s)"
    return None


def wait_for(session: requests.Session, base: str, seconds: float) -> bool:
    """Until the server answers its CapabilityStatement (HAPI takes a while to start)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if session.get(f"{base}/metadata", timeout=TIMEOUT_SECONDS).status_code == 200:
                return True
        except requests.RequestException:
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(2)


def load(base: str, today: date, session: requests.Session) -> list[str]:
    """POST one transaction per example; returns the problems (empty when all were loaded)."""
    problems = []
    for example in load_examples():
        bundle = transaction_bundle(example, today)
        invalid = r4_problem(bundle)
        if invalid is not None:
            print(f"skipped {example.name}: {invalid} (flawed on purpose; try it with prefetch)",
                  flush=True)
            continue
        response = session.post(
            base, json=bundle, timeout=TIMEOUT_SECONDS,
            headers={"Content-Type": FHIR_JSON, "Accept": FHIR_JSON},
        )
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        if response.status_code != 200 or answer.get("type") != "transaction-response":
            problems.append(f"{example.name}: HTTP {response.status_code}")
            continue
        print(f"loaded {example.name}: Patient/{example.patient_id}, "
              f"{len(bundle['entry'])} resources", flush=True)
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fhir-server", required=True, help="the FHIR base URL")
    parser.add_argument("--today", type=date.fromisoformat, default=None,
                        help="the date the records are moved to (default $MYOCDS_TODAY, the "
                        "service's pinned date, else today)")
    parser.add_argument("--wait", type=float, default=0.0,
                        help="seconds to wait for the server to answer /metadata")
    args = parser.parse_args(argv)
    base = args.fhir_server.rstrip("/")
    session = requests.Session()
    if not wait_for(session, base, args.wait):
        print(f"load_examples: {base} did not answer within {args.wait:g} s", file=sys.stderr)
        return 2
    pinned = os.environ.get("MYOCDS_TODAY", "").strip()
    today = args.today or (date.fromisoformat(pinned) if pinned else date.today())
    problems = load(base, today, session)
    for problem in problems:
        print(f"load_examples: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
