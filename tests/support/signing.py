"""Signing keys for tests of JWT authentication: a client key pair made here that publishes its
JWK and signs tokens for the test issuer below. The session fixtures ``rs384`` and ``es384`` and
the ``issuers_file`` writer that use them are in ``tests/conftest.py``."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

ISS = "https://ehr.test.example"
JKU = "https://ehr.test.example/.well-known/jwks.json"
FHIR_SERVER = "https://fhir.test.example/r4"
BASE_URL = "https://cds.test.example"

_CURVES = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1, "ES512": ec.SECP521R1}


@dataclass
class SigningKey:
    """A client key pair: the private half signs, ``jwk`` is what the client publishes."""

    alg: str
    kid: str
    private: Any
    jwk: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        public = self.private.public_key()
        if self.alg.startswith("ES"):
            self.jwk = json.loads(ECAlgorithm.to_jwk(public))
        else:
            self.jwk = json.loads(RSAAlgorithm.to_jwk(public))
        self.jwk.update(kid=self.kid, use="sig", alg=self.alg)

    @classmethod
    def generate(cls, alg: str, kid: str | None = None) -> SigningKey:
        if alg.startswith("ES"):
            private: Any = ec.generate_private_key(_CURVES[alg]())
        else:
            private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return cls(alg, kid or f"{alg.lower()}-{uuid.uuid4().hex[:8]}", private)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.jwk]}

    def token(
        self,
        *,
        header: dict[str, Any] | None = None,
        drop: tuple[str, ...] = (),
        now: float | None = None,
        **claims: Any,
    ) -> str:
        issued = time.time() if now is None else now
        payload: dict[str, Any] = {
            "iss": ISS,
            "aud": f"{BASE_URL}/cds-services",
            "iat": int(issued),
            "exp": int(issued) + 300,
            "jti": str(uuid.uuid4()),
        }
        payload.update(claims)
        for name in drop:
            payload.pop(name, None)
        headers = {"kid": self.kid, "typ": "JWT", "jku": JKU}
        headers.update(header or {})
        headers = {k: v for k, v in headers.items() if v is not None}
        return jwt.encode(payload, self.private, algorithm=self.alg, headers=headers)
