"""Make the compose stack's own EHR issuer at start: a fresh EC P-384 key pair, the private key for
the ``call`` step (``ehr-private.pem``) and an issuers file for the service (``issuers.json``)
that trusts only this key and lets it name only the stack's FHIR server.

    python make_issuer.py --out /keys --iss https://ehr.compose.invalid --fhir-server URL

A key that already exists is kept (a restarted stack keeps its issuer); the issuers file is
rewritten from it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cds_service.commands.call import public_jwk

PRIVATE_KEY = "ehr-private.pem"
ISSUERS = "issuers.json"


def make_issuer(out: Path, iss: str, fhir_servers: list[str]) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    key_path = out / PRIVATE_KEY
    if key_path.is_file():
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    else:
        key = ec.generate_private_key(ec.SECP384R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        descriptor = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(pem)
    issuers: dict[str, Any] = {"issuers": [{
        "iss": iss,
        "name": "the compose stack's EHR (docker/loader/make_issuer.py)",
        "jwks": {"keys": [public_jwk(key)]},
        "fhirServers": fhir_servers,
    }]}
    (out / ISSUERS).write_text(json.dumps(issuers, indent=2) + "\n", encoding="utf-8")
    return issuers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="directory for the two files")
    parser.add_argument("--iss", required=True, help="the issuer (the JWT's iss)")
    parser.add_argument("--fhir-server", action="append", required=True,
                        help="a FHIR base URL the issuer may send as fhirServer (repeatable)")
    args = parser.parse_args(argv)
    issuers = make_issuer(args.out, args.iss, args.fhir_server)
    kid = issuers["issuers"][0]["jwks"]["keys"][0]["kid"]
    print(f"issuer {args.iss}: key {kid} in {args.out / ISSUERS}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
