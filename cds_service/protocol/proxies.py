"""X-Forwarded-* headers believed only from the configured reverse proxies.

A client can send ``X-Forwarded-Proto``/``-Host``/``-For`` itself. From an address in
``MYOCDS_TRUSTED_PROXIES`` werkzeug's ``ProxyFix`` applies one hop of them (the proxy in front
of us appended the last value); from any other peer they are removed before the application
sees the request. Nothing security-relevant is derived from them anyway (the JWT ``aud`` comes
from ``MYOCDS_PUBLIC_BASE_URL`` only): this keeps the logged client address and URLs honest.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from werkzeug.middleware.proxy_fix import ProxyFix

_FORWARDED = ("HTTP_FORWARDED", "HTTP_X_FORWARDED_")


class TrustedProxies:
    def __init__(self, app: Any, trusted: Iterable[str]) -> None:
        self.app = app
        self.networks = [ipaddress.ip_network(value, strict=False) for value in trusted]
        self.fixed = ProxyFix(app, x_for=1, x_proto=1, x_host=1, x_port=1, x_prefix=0)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if self._trusted(environ.get("REMOTE_ADDR")):
            return self.fixed(environ, start_response)
        for key in [k for k in environ if k.startswith(_FORWARDED)]:
            del environ[key]
        return self.app(environ, start_response)

    def _trusted(self, peer: object) -> bool:
        if not self.networks or not isinstance(peer, str):
            return False
        try:
            address = ipaddress.ip_address(peer.split("%", 1)[0])
        except ValueError:
            return False
        return any(address in network for network in self.networks)
