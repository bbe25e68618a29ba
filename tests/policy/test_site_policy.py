"""Per-site policy through HTTP: each caller's call is decided with its own site's settings and
rules (issue 15), and a faulty policy file stops start-up naming each fault."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from cds_service import create_app
from cds_service.errors import ConfigurationError
from cds_service.settings import Settings

from .conftest import BASE_URL, Site, call, card_of, example_call, issuer_entry

IVIG_SIGN = "ivig-order-check"
REVIEW = "myopathy-review"


def test_two_tenants_of_one_issuer_and_another_issuer_get_their_own_dosing_weight(
    policy_client: FlaskClient, sites: dict[str, Site]
) -> None:
    # The same record (165 cm, 100 kg woman; IBW 56.9 kg), in the same run, for three sites.
    body = example_call("obese-first-ivig-dose", IVIG_SIGN)
    shown = {}
    for name in ("north", "south", "clinic"):
        dose01 = card_of(call(policy_client, sites[name], IVIG_SIGN, body), "DOSE-01")
        assert dose01 is not None, name
        shown[name] = dose01
    assert "dosing weight 74.1 kg" in shown["north"]["summary"]  # adjusted: 56.9 + 0.4 × 43.1
    assert "site policy: adjusted body weight" in shown["north"]["detail"]
    assert "dosing weight 100 kg" in shown["south"]["summary"]  # actual
    assert "site policy: actual body weight" in shown["south"]["detail"]
    assert "dosing weight 56.9 kg" in shown["clinic"]["summary"]  # the default: ideal
    assert "site policy: ideal body weight" in shown["clinic"]["detail"]


def test_a_site_that_switched_cont02_off_never_receives_it(
    policy_client: FlaskClient, sites: dict[str, Site]
) -> None:
    body = example_call("ck-monitoring-overdue", REVIEW)
    for _ in range(2):  # and not on a second call either
        assert card_of(call(policy_client, sites["south"], REVIEW, body), "CONT-02") is None
        assert card_of(call(policy_client, sites["north"], REVIEW, body), "CONT-02") is not None
        assert card_of(call(policy_client, sites["clinic"], REVIEW, body), "CONT-02") is not None


@pytest.mark.parametrize(
    "tenant,signer",
    [
        ("west", "north"),  # a tenant the file does not name (and no entry without a tenant)
        ("north", "south"),  # south's key claiming north: checked with north's keys
    ],
)
def test_a_token_gets_no_site_it_is_not_configured_or_keyed_for(
    policy_client: FlaskClient, sites: dict[str, Site], tenant: str, signer: str
) -> None:
    claimed = Site(sites["north"].iss, tenant, sites[signer].key)
    path = f"/cds-services/{IVIG_SIGN}"
    response = policy_client.post(path, json=example_call("obese-first-ivig-dose", IVIG_SIGN),
                                  headers=claimed.headers(path))
    assert response.status_code == 401


def test_the_same_tenant_twice_stops_start_up(
    write_issuers: Callable[..., str], sites: dict[str, Site]
) -> None:
    issuers = write_issuers(issuer_entry(sites["north"]), issuer_entry(sites["north"]))
    with pytest.raises(ConfigurationError, match="tenant 'north' is configured twice"):
        create_app(Settings(auth="required", public_base_url=BASE_URL, issuers_file=issuers))


# --- one test per policy-file fault ----------------------------------------------------------


def _start(write_issuers: Callable[..., str], site: Site, **policy: Any) -> str:
    issuers = write_issuers(issuer_entry(site, **policy))
    with pytest.raises(ConfigurationError) as raised:
        create_app(Settings(auth="required", public_base_url=BASE_URL, issuers_file=issuers))
    return str(raised.value)


def test_an_unknown_setting_stops_start_up(
    write_issuers: Callable[..., str], sites: dict[str, Site]
) -> None:
    message = _start(write_issuers, sites["north"], settings={"ivig_dosing_wieght": "adjusted"})
    assert "tenant north: settings: unknown setting 'ivig_dosing_wieght'" in message


@pytest.mark.parametrize(
    "name,value,reason",
    [
        ("ivig_dosing_weight", "lean", "is not one of ideal, adjusted, actual"),
        ("recent_days", 0, "is out of range (1 to 365)"),
        ("recent_days", 30.5, "is not a whole number of days"),
        ("ck_uln_female", 5000, "is out of range (20 to 2000)"),
        ("egfr_threshold", "sixty", "is not a number"),
        ("ck_monitor_early_days", True, "is not a number"),
    ],
)
def test_a_value_out_of_range_stops_start_up(
    write_issuers: Callable[..., str], sites: dict[str, Site], name: str, value: Any, reason: str
) -> None:
    message = _start(write_issuers, sites["clinic"], settings={name: value})
    assert f"settings: {name}={value!r} {reason}" in message


def test_contradicting_windows_stop_start_up(
    write_issuers: Callable[..., str], sites: dict[str, Site]
) -> None:
    message = _start(write_issuers, sites["clinic"], settings={"hmg_early_days": 60})
    assert "hmg_early_days=60 must be below hmg_withdrawal_days=56" in message


def test_an_unknown_rule_stops_start_up(
    write_issuers: Callable[..., str], sites: dict[str, Site]
) -> None:
    message = _start(write_issuers, sites["south"], disabledRules=["CONT-02", "CONT-09"])
    assert "disabledRules: unknown rule 'CONT-09'" in message
    assert "'CONT-02'" not in message


def test_every_fault_of_the_file_is_named_at_once(
    write_issuers: Callable[..., str], sites: dict[str, Site]
) -> None:
    issuers = write_issuers(
        issuer_entry(sites["north"], settings={"colour": "blue", "recent_days": 9999}),
        issuer_entry(sites["clinic"], disabledRules=["NOPE-01"]),
    )
    with pytest.raises(ConfigurationError) as raised:
        create_app(Settings(auth="required", public_base_url=BASE_URL, issuers_file=issuers))
    message = str(raised.value)
    assert "unknown setting 'colour'" in message
    assert "recent_days=9999 is out of range" in message
    assert "unknown rule 'NOPE-01'" in message


def test_the_gallery_shows_each_sites_values_beside_the_defaults(policy_settings: Settings) -> None:
    client = create_app(policy_settings.with_overrides(try_pages=True)).test_client()
    html = client.get("/try/rules").get_data(as_text=True)
    dose01 = html[html.index('data-rule="DOSE-01"'):]
    dose01 = dose01[: dose01.index("</section>")]
    row = dose01[dose01.index('data-env="MYOCDS_IVIG_DOSING_WEIGHT"'):]
    row = row[: row.index("</tr>")]
    assert ">ideal" in row  # the deployment's value (the default)
    assert "https://ehr.hospitals.example tenant north: adjusted" in row
    assert "https://ehr.hospitals.example tenant south: actual" in row
    assert "ehr.clinic.example:" not in row  # the clinic keeps the default
    cont02 = html[html.index('data-rule="CONT-02"'):]
    cont02 = cont02[: cont02.index("</section>")]
    assert "off at https://ehr.hospitals.example tenant south" in cont02
    assert "version 2.0.0, active" in cont02
