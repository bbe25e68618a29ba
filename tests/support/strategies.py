"""Hypothesis strategies for CDS Hooks traffic, valid-ish and hostile, and the response oracle.

Shared by the fuzz tests (``test_fuzz.py``) and ``scripts/fuzz.py`` (the 20,000-request run).

Valid-ish calls start from the patient scenarios (the project's own in ``tests/scenarios``, and
an optional reference set beside the repository when it is there; each gives the request an EHR
holding that record would send, prefetch built by the service's own templates)
and mutate them: drop a member, replace a subtree by arbitrary JSON, perturb numbers, dates,
codes and units, null or mistype prefetch values, repeat entries. Hostile calls are built from
scratch: random hooks, contexts, prefetch values, fhirServer URLs aimed at our own network.
Raw requests send bytes that are not CDS Hooks at all: broken JSON, deep nesting, wrong media
types. Every generated fhirServer is an IP literal or a loopback name, so no DNS query or
request ever leaves the machine.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
from hypothesis import strategies as st

from cds_service.demo.search import build_prefetch
from cds_service.protocol.openapi import OPERATION_OUTCOME_SCHEMA
from cds_service.protocol.schemas import errors as schema_errors
from cds_service.services import SERVICES

REPO_ROOT = Path(__file__).resolve().parents[2]
SCENARIO_DIRS = (REPO_ROOT / "tests" / "scenarios", REPO_ROOT.parent / "shared" / "scenarios")
SERVICE_IDS = sorted({s.id for s in SERVICES})
HOOKS = sorted({s.hook for s in SERVICES})
# Dead local port: a fetch allowed by MYOCDS_FHIR_ALLOW fails fast (connection refused).
DEAD_FHIR = "http://127.0.0.1:9/fhir"


def local_only_getaddrinfo(real: Any, label: str) -> Any:
    """``socket.getaddrinfo`` that resolves only IP literals and localhost: a generated
    fhirServer such as https://0.com must never make the fuzzer query DNS or the network."""

    def local_only(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        try:
            ipaddress.ip_address(name.strip("[]").split("%")[0])
        except ValueError:
            if name not in ("localhost", "localhost.localdomain"):
                raise socket.gaierror(socket.EAI_NONAME, f"{label}: no DNS") from None
        return real(host, *args, **kwargs)

    return local_only


@dataclass(frozen=True)
class Call:
    """One HTTP request to send through the Flask test client."""

    method: str
    path: str
    body: bytes | None
    content_type: str | None
    # Sensitive values planted in this request (patient ids, names, tokens): must not be logged.
    secrets: tuple[str, ...] = ()

    def send(self, client: Any) -> Any:
        headers = {"Content-Type": self.content_type} if self.content_type else {}
        return client.open(self.path, method=self.method, data=self.body, headers=headers)


# --- seeds -------------------------------------------------------------------------------------


def _synthetic_seed() -> tuple[str, dict[str, Any]]:
    patient_id = "seed-pt"
    return "myopathy-review", {
        "hook": "patient-view",
        "hookInstance": str(uuid.UUID(int=1)),
        "context": {"patientId": patient_id, "userId": "Practitioner/seed"},
        "prefetch": {
            "patient": {"resourceType": "Patient", "id": patient_id, "gender": "male"},
            "observations": {
                "resourceType": "Bundle",
                "type": "searchset",
                "entry": [
                    {
                        "resource": {
                            "resourceType": "Observation",
                            "id": "ck-1",
                            "status": "final",
                            "code": {"coding": [{"system": "http://loinc.org", "code": "2157-6"}]},
                            "subject": {"reference": f"Patient/{patient_id}"},
                            "effectiveDateTime": "2026-01-10",
                            "valueQuantity": {"value": 4000, "unit": "U/L", "code": "U/L"},
                        }
                    }
                ],
            },
        },
    }


def load_seeds() -> list[tuple[str, dict[str, Any]]]:
    """(service id, request body) for every scenario and every service of its hook."""
    seeds: list[tuple[str, dict[str, Any]]] = []
    for path in (p for d in SCENARIO_DIRS for p in sorted(d.glob("*.json"))):
        scenario = json.loads(path.read_text(encoding="utf-8"))
        for service in SERVICES:
            if service.hook != scenario["hook"]:
                continue
            body = {
                "hook": scenario["hook"],
                "hookInstance": str(uuid.uuid5(
                    uuid.NAMESPACE_URL, f"{path.parent.parent.name}/{path.stem}/{service.id}"
                )),
                "context": scenario["context"],
                "prefetch": build_prefetch(service, scenario["context"], scenario["record"]),
            }
            seeds.append((service.id, body))
    return seeds or [_synthetic_seed()]


SEEDS = load_seeds()


# --- JSON building blocks -------------------------------------------------------------------

hostile_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "",
            " ",
            "{{context.patientId}}",
            "../../etc/passwd",
            "Patient/../Observation",
            "<script>alert(1)</script>",
            "' OR 1=1 --",
            "\u0000",
            "\ud7ff\ufeff",
            "a" * 300,
            "NaN",
            "1e999",
            "2026-02-30",
            "2026-13-01T25:61:00Z",
            "urn:uuid:" + str(uuid.UUID(int=7)),
            "http://169.254.169.254/latest/meta-data/",
        ]
    ),
)

json_numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, -0.0, 1e308, -1e-308, 10**30, 0.1, 7, 192, 308, 3080]),
)

json_leaves = st.one_of(st.none(), st.booleans(), json_numbers, hostile_text)

json_values = st.recursive(
    json_leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(hostile_text, children, max_size=4)
    ),
    max_leaves=12,
)

fhir_dates = st.one_of(
    st.dates().map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat() + "Z"),
    st.sampled_from(["2025", "2025-07", "2026-01-15T10:00:00+05:00", "2025-02-30", "yesterday"]),
)

units = st.sampled_from(
    [
        "U/L",
        "IU/L",
        "ukat/L",
        "mg/dL",
        "g/L",
        "mg/L",
        "kg",
        "[lb_av]",
        "g",
        "mL/min/1.73m2",
        "%",
        "",
    ]
)

codes = st.sampled_from(
    # CK, IgA, anti-HMGCR, weight, height, creatinine, eGFR (LOINC); statin and IVIG (RxNorm/NDC)
    ["2157-6", "2458-8", "93493-5", "29463-7", "8302-2", "2160-0", "98979-8", "617310",
     "198211", "44206-439", "J06BA02", "0000-0", ""]
)  # fmt: skip

fhir_server_urls = st.sampled_from(
    [
        DEAD_FHIR,
        "http://127.0.0.1:9/fhir/",
        "https://127.0.0.1/fhir",
        "https://169.254.169.254/latest",
        "https://10.0.0.7/fhir",
        "https://[::1]/fhir",
        "https://[fd00::1]/fhir",
        "https://localhost/fhir",
        "https://0.0.0.0/fhir",
        "http://192.168.1.1/fhir",
        "https://127.0.0.1@169.254.169.254/",
        "https://127.0.0.1/fhir?x=1",
        "ftp://127.0.0.1/fhir",
        "not a url",
    ]
)


# --- mutations --------------------------------------------------------------------------------


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found.extend(_paths(value, (*prefix, key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.extend(_paths(value, (*prefix, index)))
    return found


def _parent(body: Any, path: tuple[Any, ...]) -> Any:
    node = body
    for part in path[:-1]:
        node = node[part]
    return node


def _leaf_replacement(draw: Callable[..., Any], current: Any, key: Any) -> Any:
    """A value of the kind a careless or hostile client would put in place of ``current``."""
    name = str(key).lower()
    if isinstance(current, bool):
        return draw(st.one_of(st.booleans(), json_leaves))
    if isinstance(current, int | float):
        return draw(json_numbers)
    if isinstance(current, str):
        if "date" in name or "period" in name or name in ("start", "end", "authoredon"):
            return draw(st.one_of(fhir_dates, hostile_text))
        if name in ("unit", "code") and key != "resourceType":
            return draw(st.one_of(units, codes, hostile_text))
        if name == "resourcetype":
            return draw(
                st.sampled_from(
                    ["Observation", "Patient", "Bundle", "OperationOutcome", "MedicationOrder",
                     "MedicationRequest", "Medication", "Basic", "", "observation"]
                )
            )  # fmt: skip
        if name == "fhirserver":
            return draw(fhir_server_urls)
        return draw(hostile_text)
    return draw(json_values)


@st.composite
def mutated_bodies(draw: Callable[..., Any]) -> tuple[str, dict[str, Any]]:
    service_id, seed = draw(st.sampled_from(SEEDS))
    body = copy.deepcopy(seed)
    for _ in range(draw(st.integers(min_value=0, max_value=4))):
        paths = [p for p in _paths(body) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = _parent(body, path)
        key = path[-1]
        action = draw(st.sampled_from(["replace", "replace", "leaf", "leaf", "drop", "repeat"]))
        if action == "drop":
            del parent[key]
        elif action == "repeat" and isinstance(parent, list):
            parent.extend([copy.deepcopy(parent[key])] * draw(st.integers(1, 30)))
        elif action == "leaf":
            parent[key] = _leaf_replacement(draw, parent[key], key)
        else:
            parent[key] = draw(json_values)
    if draw(st.integers(0, 9)) == 0:
        # Prefetch incomplete: the service must fetch, from a server it may or may not call.
        prefetch = body.get("prefetch")
        if isinstance(prefetch, dict) and prefetch:
            prefetch.pop(draw(st.sampled_from(sorted(prefetch))), None)
        if draw(st.booleans()):
            body["fhirServer"] = draw(fhir_server_urls)
            if draw(st.booleans()):
                body["fhirAuthorization"] = {
                    "access_token": "fuzz-access-token-" + uuid.uuid4().hex,
                    "token_type": "Bearer",
                    "expires_in": 300,
                    "scope": "patient/*.read",
                    "subject": "myocds",
                }
    return service_id, body


@st.composite
def hostile_bodies(draw: Callable[..., Any]) -> tuple[str, dict[str, Any]]:
    hook = draw(st.one_of(st.sampled_from(HOOKS), hostile_text))
    context = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "patientId": st.one_of(st.from_regex(r"\A[A-Za-z0-9.-]{1,64}\Z"), json_values),
                "userId": st.one_of(st.just("Practitioner/x"), json_values),
                "selections": st.one_of(
                    st.lists(st.just("MedicationRequest/mr-1"), max_size=2), json_values
                ),
                "draftOrders": st.one_of(
                    st.fixed_dictionaries(
                        {
                            "resourceType": st.just("Bundle"),
                            "entry": st.lists(
                                st.fixed_dictionaries({"resource": json_values}), max_size=3
                            ),
                        }
                    ),
                    json_values,
                ),
            },
        )
    )
    body: dict[str, Any] = draw(
        st.fixed_dictionaries(
            {"hook": st.just(hook), "context": st.just(context)},
            optional={
                "hookInstance": st.one_of(st.uuids().map(str), hostile_text),
                "fhirServer": fhir_server_urls,
                "fhirAuthorization": st.one_of(
                    st.fixed_dictionaries(
                        {"access_token": hostile_text, "token_type": st.just("Bearer")}
                    ),
                    json_values,
                ),
                "prefetch": st.one_of(
                    st.dictionaries(
                        st.sampled_from(
                            ["patient", "observations", "medicationRequests", "conditions", "x"]
                        ),
                        st.one_of(
                            st.none(),
                            st.fixed_dictionaries(
                                {"resourceType": st.sampled_from(["Bundle", "Patient", "Basic"])},
                                optional={"entry": json_values, "id": hostile_text},
                            ),
                            json_values,
                        ),
                        max_size=3,
                    ),
                    json_values,
                ),
                "extension": json_values,
            },
        )
    )
    return draw(st.one_of(st.sampled_from(SERVICE_IDS), hostile_text)), body


def service_path(service_id: str, suffix: str = "") -> str:
    # Percent-encode whatever a hostile id contains so it stays one path segment.
    from urllib.parse import quote

    return f"/cds-services/{quote(service_id, safe='')}{suffix}"


@st.composite
def service_calls(draw: Callable[..., Any]) -> Call:
    service_id, body = draw(st.one_of(mutated_bodies(), mutated_bodies(), hostile_bodies()))
    return Call("POST", service_path(service_id), json.dumps(body).encode(), "application/json")


@st.composite
def feedback_calls(draw: Callable[..., Any]) -> Call:
    item = draw(
        st.fixed_dictionaries(
            {
                "card": st.one_of(st.uuids().map(str), hostile_text),
                "outcome": st.one_of(st.sampled_from(["accepted", "overridden"]), hostile_text),
                "outcomeTimestamp": st.one_of(
                    st.just("2026-01-15T10:00:00Z"), fhir_dates, hostile_text
                ),
            },
            optional={
                "acceptedSuggestions": st.one_of(
                    st.lists(st.fixed_dictionaries({"id": st.uuids().map(str)}), max_size=2),
                    json_values,
                ),
                "overrideReason": st.one_of(
                    st.fixed_dictionaries(
                        {"reason": st.fixed_dictionaries({"code": codes, "system": hostile_text})}
                    ),
                    json_values,
                ),
            },
        )
    )
    body = draw(
        st.one_of(st.just({"feedback": [item]}), st.just({"feedback": [item] * 3}), json_values)
    )
    service_id = draw(st.one_of(st.sampled_from(SERVICE_IDS), hostile_text))
    return Call(
        "POST",
        service_path(service_id, "/feedback"),
        json.dumps(body).encode(),
        "application/json",
    )


@st.composite
def raw_calls(draw: Callable[..., Any]) -> Call:
    """Requests that are not CDS Hooks JSON at all."""
    depth = draw(st.integers(1, 2000))
    body = draw(
        st.one_of(
            st.binary(max_size=200),
            st.text(max_size=200).map(str.encode),
            st.just(b"[" * depth + b"]" * depth),
            st.just(b'{"hook": "patient-view", "context": ' * 80 + b"{}" + b"}" * 80),
            st.just(b'{"hook": NaN}'),
            st.just(b'{"a": 1,}'),
            st.just(b"\xef\xbb\xbf{}"),
            st.just(b"\xff\xfe{\x00}\x00"),
            st.just(b'{"hook": "patient-view", "hookInstance": "' + b"9" * 5000 + b'"}'),
            json_values.map(lambda v: json.dumps(v).encode()),
        )
    )
    content_type = draw(
        st.sampled_from(
            ["application/json", "application/fhir+json", "text/plain", "application/xml",
             "multipart/form-data", "application/json; charset=latin-1", None]
        )
    )  # fmt: skip
    method, path = draw(
        st.sampled_from(
            [
                ("POST", "/cds-services/myopathy-review"),
                ("POST", "/cds-services/statin-order-check/feedback"),
                ("POST", "/cds-services"),
                ("PUT", "/cds-services/ivig-order-check"),
                ("GET", "/cds-services/ivig-order-check"),
                ("DELETE", "/cds-services"),
                ("POST", "/cds-services/%2e%2e"),
                ("GET", "/nowhere"),
            ]
        )
    )
    return Call(method, path, body, content_type)


any_call = st.one_of(
    service_calls(), service_calls(), service_calls(), feedback_calls(), raw_calls()
)


# --- the oracle ---------------------------------------------------------------------------------

_OUTCOME = jsonschema.Draft202012Validator(OPERATION_OUTCOME_SCHEMA)


def check_response(call: Call, response: Any) -> None:
    """No 5xx; a 200 is schema-valid for its endpoint; every error is an OperationOutcome."""
    text = response.get_data(as_text=True)
    assert response.status_code < 500, (
        f"{call.method} {call.path} -> {response.status_code}\nbody: {call.body!r}"
    )
    if call.method == "OPTIONS" or response.status_code == 204:
        return
    assert response.mimetype == "application/json", response.mimetype
    document = json.loads(text)
    if response.status_code == 200:
        if call.path.endswith("/feedback"):
            assert document == {}
        elif call.path == "/cds-services" and call.method == "GET":
            assert schema_errors("discovery", document) == []
        else:
            problems = schema_errors("response", document)
            assert problems == [], problems
    else:
        assert 400 <= response.status_code < 500
        problems = [e.message for e in _OUTCOME.iter_errors(document)]
        assert problems == [], problems
        if response.status_code == 401:
            assert response.headers.get("WWW-Authenticate") == "Bearer"


# --- exhaustive type confusion ----------------------------------------------------------------

ODD_VALUES: tuple[Any, ...] = (None, -1.5e63, "x", [7], {"x": 7})


def type_confusion_calls(values: tuple[Any, ...] = ODD_VALUES) -> list[Call]:
    """Every member of every seed request replaced, one at a time, by each value of another
    JSON type: the deterministic sweep behind the random fuzzing (where a parser assumes a list
    and gets a number)."""
    calls: list[Call] = []
    for service_id, seed in SEEDS:
        for path in _paths(seed):
            # Entries of one list share a shape: the first stands for the rest.
            if not path or any(isinstance(part, int) and part > 0 for part in path):
                continue
            current = _parent(seed, path)[path[-1]]
            for value in values:
                if type(value) is type(current):
                    continue
                body = copy.deepcopy(seed)
                _parent(body, path)[path[-1]] = value
                calls.append(
                    Call("POST", service_path(service_id), json.dumps(body).encode(),
                         "application/json")
                )  # fmt: skip
    return calls
