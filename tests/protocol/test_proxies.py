"""X-Forwarded-* believed only from MYOCDS_TRUSTED_PROXIES; dropped from anyone else."""

from __future__ import annotations

import pytest
from flask import jsonify, request

from cds_service.errors import ConfigurationError
from cds_service.settings import Settings

FORWARDED = {
    "X-Forwarded-For": "203.0.113.9",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "cds.example.org",
}


@pytest.fixture
def peer_client(make_app, settings):
    app = make_app(settings.with_overrides(trusted_proxies=("10.0.0.0/8", "::1")))

    @app.get("/_peer")
    def peer():
        return jsonify(addr=request.remote_addr, scheme=request.scheme, host=request.host,
                       forwarded=sorted(k for k in request.headers.keys() if "Forwarded" in k))

    return app.test_client()


def test_forwarded_headers_from_a_trusted_proxy_are_applied(peer_client):
    seen = peer_client.get("/_peer", headers=FORWARDED,
                           environ_base={"REMOTE_ADDR": "10.1.2.3"}).get_json()
    assert (seen["addr"], seen["scheme"], seen["host"]) == (
        "203.0.113.9", "https", "cds.example.org")


@pytest.mark.parametrize("peer", ["192.0.2.1", "11.0.0.1", "::2", "not-an-address"])
def test_forwarded_headers_from_anyone_else_are_dropped(peer_client, peer):
    seen = peer_client.get("/_peer", headers={**FORWARDED, "Forwarded": "for=1.2.3.4"},
                           environ_base={"REMOTE_ADDR": peer}).get_json()
    assert (seen["addr"], seen["scheme"], seen["host"]) == (peer, "http", "localhost")
    assert seen["forwarded"] == []


def test_no_trusted_proxy_by_default(make_app, settings):
    assert Settings().trusted_proxies == ()
    app = make_app(settings)

    @app.get("/_peer")
    def peer():
        return jsonify(addr=request.remote_addr, scheme=request.scheme)

    seen = app.test_client().get("/_peer", headers=FORWARDED,
                                 environ_base={"REMOTE_ADDR": "127.0.0.1"}).get_json()
    assert seen == {"addr": "127.0.0.1", "scheme": "http"}


def test_trusted_proxies_setting_is_checked():
    env = {"MYOCDS_TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.7"}
    assert Settings.from_env(env).trusted_proxies == ("10.0.0.0/8", "192.168.1.7")
    with pytest.raises(ConfigurationError, match="MYOCDS_TRUSTED_PROXIES: 'proxy.local'"):
        Settings.from_env({"MYOCDS_TRUSTED_PROXIES": "proxy.local"})
