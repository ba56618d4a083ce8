"""The Salesforce sandbox's fidelity for pollers (API_NOTES.md, Reads, Ids, Echo prevention),
over real HTTP: 15-character ids, `queryAll` and the recycle bin, `/updated/` and
`/deleted/` with their limits, late commits, extra API users, and a widely used client
(simple-salesforce) working against it as a person in the org."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import httpx
import pytest
import requests
from requests.adapters import HTTPAdapter
from requests.models import PreparedRequest, Response
from simple_salesforce.api import Salesforce, SFType
from simple_salesforce.exceptions import SalesforceResourceNotFound

from sandboxes.base import FaultPlan
from sandboxes.population import sfdc_id
from sandboxes.salesforce import SalesforceConfig, human_delete, human_update
from sandboxes.sfdc_ids import checksum, full_id
from tests.contract.test_salesforce_sandbox import CONTACT, LEAD, Clock, Org, make_org, org

__all__ = ["make_org", "org"]  # fixtures used here

PERSON = "0050000000000ALICE"  # an extra API user: a person's script or integration
ALICE = ("alice-app", "alice-secret", PERSON)
NEW_OPT_OUT = {"HasOptedOutOfEmail": True}


def login(org: Org, client_id: str, secret: str) -> dict[str, Any]:
    response = org.http.post(
        "/services/oauth2/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def as_user(org: Org, answer: dict[str, Any]) -> Org:
    return Org(org.app, org.server, org.http, answer["access_token"], answer)


def stamp(org: Org, record_id: str) -> str:
    return str(org.state.get(record_id)["SystemModstamp"])  # type: ignore[index]


# -- ids -----------------------------------------------------------------------------------


def test_the_checksum_is_salesforces() -> None:
    # Salesforce's documented example, and a case flip making another id.
    assert full_id("001A0000006Vm9r") == "001A0000006Vm9rIAC"
    assert checksum("001a0000006Vm9r") != checksum("001A0000006Vm9r")
    assert full_id(LEAD) == LEAD


def test_fifteen_character_ids_are_accepted_wherever_ids_are(org: Org) -> None:
    short = CONTACT[:15]

    read = org.call("GET", f"/sobjects/Contact/{short}").json()
    by_soql = org.records(f"SELECT Id FROM Contact WHERE Id = '{short}'")
    updated = org.call(
        "PATCH",
        "/composite/sobjects",
        json={"records": [{"attributes": {"type": "Contact"}, "id": short, **NEW_OPT_OUT}]},
    ).json()
    task = org.upsert({"ActionsSync_Id__c": "t", "Subject": "s", "WhoId": short}).json()

    assert read["Id"] == CONTACT and by_soql == [
        {"attributes": by_soql[0]["attributes"], "Id": CONTACT}
    ]
    assert updated == [{"id": CONTACT, "success": True, "errors": []}]
    assert org.state.records["Task"][task[0]["id"]]["WhoId"] == CONTACT
    assert org.state.get(CONTACT)["HasOptedOutOfEmail"] is True  # type: ignore[index]


def test_fifteen_character_ids_are_case_sensitive(org: Org) -> None:
    other_case = LEAD[:2] + LEAD[2].lower() + LEAD[3:15]  # 00q...: not a Lead at all

    assert org.call("GET", f"/sobjects/Lead/{other_case}").status_code == 404
    assert org.records(f"SELECT Id FROM Lead WHERE Id = '{other_case}'") == []


# -- queryAll and the recycle bin ----------------------------------------------------------


def test_query_all_answers_deleted_rows_until_the_recycle_bin_is_emptied(
    make_org: Callable[..., Org],
) -> None:
    clock = Clock()
    org = make_org(clock=clock)
    human_delete(org.state, LEAD)
    soql = f"SELECT Id, IsDeleted FROM Lead WHERE Id = '{LEAD}'"

    live, every = org.records(soql), org.query(soql, "queryAll").json()["records"]
    clock.advance(16 * 86400)
    purged = org.query(soql, "queryAll").json()["records"]

    assert live == [] and [r["IsDeleted"] for r in every] == [True]
    assert purged == []


def test_an_emptied_recycle_bin_leaves_the_deletion_to_the_deleted_feed(org: Org) -> None:
    human_delete(org.state, LEAD)
    soql = f"SELECT Id, IsDeleted FROM Lead WHERE Id = '{LEAD}'"
    before = org.query(soql, "queryAll").json()["records"]

    emptied = org.http.post("/_sandbox/salesforce/recycle-bin/empty").json()
    now = datetime.now(UTC)
    feed = org.call(
        "GET",
        "/sobjects/Lead/deleted/",
        params={
            "start": f"{now - timedelta(minutes=5):%Y-%m-%dT%H:%M:%SZ}",
            "end": f"{now + timedelta(minutes=1):%Y-%m-%dT%H:%M:%SZ}",
        },
    ).json()

    assert [r["Id"] for r in before] == [LEAD] and emptied == {"purged": 1}
    assert org.query(soql, "queryAll").json()["records"] == []
    assert [r["id"] for r in feed["deletedRecords"]] == [LEAD]


def test_the_orgs_clock_moves_on_by_a_control_call(org: Org) -> None:
    human_delete(org.state, LEAD)
    start = datetime.now(UTC) - timedelta(minutes=5)

    moved = org.http.post("/_sandbox/salesforce/clock", json={"advance_s": 16 * 86400}).json()
    stale = org.call(
        "GET",
        "/sobjects/Lead/deleted/",
        params={
            "start": f"{start:%Y-%m-%dT%H:%M:%SZ}",
            "end": f"{start + timedelta(days=16, minutes=10):%Y-%m-%dT%H:%M:%SZ}",
        },
    )

    assert moved["offset_s"] == 16 * 86400
    assert moved["now"] > f"{datetime.now(UTC) + timedelta(days=15):%Y-%m-%dT%H:%M:%S}"
    assert (stale.status_code, stale.json()[0]["errorCode"]) == (400, "INVALID_REPLICATION_DATE")


# -- /updated/ and /deleted/ -----------------------------------------------------------------


def window(clock: Clock, back_s: float) -> dict[str, str]:
    return {
        "start": f"{clock.now - timedelta(seconds=back_s):%Y-%m-%dT%H:%M:%SZ}",
        "end": f"{clock.now + timedelta(minutes=1):%Y-%m-%dT%H:%M:%SZ}",
    }


def test_updated_lists_the_ids_changed_in_the_window(make_org: Callable[..., Org]) -> None:
    clock = Clock()
    org = make_org(clock=clock)
    clock.advance(600)
    human_update(org.state, CONTACT, NEW_OPT_OUT)

    answer = org.call("GET", "/sobjects/Contact/updated/", params=window(clock, 120)).json()

    assert answer == {"ids": [CONTACT], "latestDateCovered": "2026-11-23T18:10:00.000+0000"}


@pytest.mark.parametrize(("path", "days"), [("updated", 31), ("deleted", 16)])
def test_a_window_older_than_the_org_keeps_is_refused(org: Org, path: str, days: int) -> None:
    now = datetime.now(UTC)
    response = org.call(
        "GET",
        f"/sobjects/Lead/{path}/",
        params={
            "start": f"{now - timedelta(days=days):%Y-%m-%dT%H:%M:%SZ}",
            "end": f"{now:%Y-%m-%dT%H:%M:%SZ}",
        },
    )

    assert (response.status_code, response.json()[0]["errorCode"]) == (
        400,
        "INVALID_REPLICATION_DATE",
    )


@pytest.mark.parametrize("path", ["updated", "deleted"])
def test_a_window_with_too_many_ids_is_refused(make_org: Callable[..., Org], path: str) -> None:
    clock = Clock()
    org = make_org(clock=clock, replication_id_limit=2)
    for record_id in (sfdc_id("00Q", n) for n in (1, 2, 3)):
        if path == "deleted":
            human_delete(org.state, record_id)
        else:
            human_update(org.state, record_id, NEW_OPT_OUT)

    response = org.call("GET", f"/sobjects/Lead/{path}/", params=window(clock, 60))

    assert (response.status_code, response.json()[0]["errorCode"]) == (400, "EXCEEDED_ID_LIMIT")


# -- late commits ----------------------------------------------------------------------------


def test_a_late_commit_is_stamped_before_rows_already_visible(make_org: Callable[..., Org]) -> None:
    clock = Clock()
    org = make_org(clock=clock)
    clock.advance(10)
    human_update(org.state, CONTACT, {"FirstName": "first"})
    human_update(org.state, LEAD, NEW_OPT_OUT, late_by_s=5)  # committed after, stamped before

    rows = org.records(
        "SELECT Id FROM Lead WHERE SystemModstamp > 2026-11-23T18:00:00Z ORDER BY SystemModstamp"
    )

    assert stamp(org, LEAD) < stamp(org, CONTACT)
    assert [r["Id"] for r in rows] == [LEAD]


def test_the_late_commit_fault_is_seeded(make_org: Callable[..., Org]) -> None:
    def late_share(seed: int) -> list[bool]:
        clock = Clock()
        org = make_org(
            clock=clock, late_commit_rate=0.5, late_commit_s=30.0, faults=FaultPlan(seed=seed)
        )
        out = []
        for n in range(1, 11):
            human_update(org.state, sfdc_id("00Q", n), {"FirstName": f"v{n}"})
            out.append(stamp(org, sfdc_id("00Q", n)) < org.state.now())
        return out

    first = late_share(3)
    assert first == late_share(3) and 0 < sum(first) < 10


# -- extra API users ---------------------------------------------------------------------------


def test_an_extra_user_acts_as_that_person(make_org: Callable[..., Org]) -> None:
    org = make_org(users=(":".join(ALICE),))
    answer = login(org, *ALICE[:2])
    alice = as_user(org, answer)

    alice.call("PATCH", f"/sobjects/Contact/{CONTACT}", json=NEW_OPT_OUT)
    org.call("PATCH", f"/sobjects/Lead/{LEAD}", json=NEW_OPT_OUT)

    assert answer["id"].endswith(f"/{PERSON}")
    assert org.login_answer["id"].endswith(f"/{org.state.config.integration_user_id}")
    modified_by = org.records(f"SELECT Id, LastModifiedById FROM Contact WHERE Id = '{CONTACT}'")[
        0
    ]["LastModifiedById"]
    assert modified_by == PERSON
    lead = org.state.get(LEAD) or {}
    assert lead["LastModifiedById"] == org.state.config.integration_user_id


def test_a_fifteen_character_user_id_is_stored_as_its_eighteen() -> None:
    config = SalesforceConfig(users=("app:secret:005000000000042",))

    assert config.api_users()[("app", "secret")] == "005000000000042AAA"


@pytest.mark.parametrize(
    "entry", ["app:secret", "app:secret:00Q000000000001", ":s:005000000000042"]
)
def test_a_malformed_user_is_refused(entry: str) -> None:
    with pytest.raises(ValueError, match="users"):
        SalesforceConfig(users=(entry,))


def test_unknown_credentials_are_refused(make_org: Callable[..., Org]) -> None:
    org = make_org(users=(":".join(ALICE),))

    response = org.http.post(
        "/services/oauth2/token",
        data={"grant_type": "client_credentials", "client_id": "alice-app", "client_secret": "no"},
    )

    assert (response.status_code, response.json()["error"]) == (400, "invalid_client")


# -- a widely used client --------------------------------------------------------------------


class _TlsTerminated(HTTPAdapter):
    """simple-salesforce always speaks https to the instance; the sandbox serves plain
    HTTP, as behind a TLS-terminating proxy: the scheme is swapped on the way out."""

    def send(self, request: PreparedRequest, *args: Any, **kwargs: Any) -> Response:
        request.url = "http://" + (request.url or "").removeprefix("https://")
        return super().send(request, *args, **kwargs)


def simple_salesforce(login_answer: dict[str, Any]) -> Salesforce:
    session = requests.Session()
    session.mount("https://", _TlsTerminated())
    return Salesforce(
        instance_url=login_answer["instance_url"],
        version="62.0",
        session_id=login_answer["access_token"],
        session=session,
    )


def test_simple_salesforce_queries_and_updates_as_an_extra_user(
    make_org: Callable[..., Org],
) -> None:
    clock = Clock()
    org = make_org(clock=clock, users=(":".join(ALICE),))
    answer = login(org, *ALICE[:2])
    clock.advance(600)  # ten minutes after the seeding
    before, after = clock.now - timedelta(minutes=1), clock.now + timedelta(minutes=1)
    sf = simple_salesforce(answer)
    # simple_salesforce types sf.<SObject> as a union with its bulk handlers
    contact, lead = cast(SFType, sf.Contact), cast(SFType, sf.Lead)

    contact.update(CONTACT[:15], NEW_OPT_OUT)
    found = sf.query_all(
        f"SELECT Id, HasOptedOutOfEmail, LastModifiedById FROM Contact WHERE Id = '{CONTACT[:15]}'"
    )["records"]
    changed = contact.updated(before, after)
    lead.delete(LEAD)
    gone = lead.deleted(before, after)

    assert [(r["Id"], r["HasOptedOutOfEmail"], r["LastModifiedById"]) for r in found] == [
        (CONTACT, True, PERSON)
    ]
    assert changed["ids"] == [CONTACT]
    assert [r["id"] for r in gone["deletedRecords"]] == [LEAD]
    with pytest.raises(SalesforceResourceNotFound):  # 404 ENTITY_IS_DELETED
        lead.get(LEAD[:15])


def test_simple_salesforce_reads_every_page(make_org: Callable[..., Org]) -> None:
    org = make_org(seed_people=450, query_page_size=200)
    answer = login(org, "actions-sync", "sandbox-secret")
    sf = simple_salesforce(answer)

    rows = sf.query_all("SELECT Id FROM Lead ORDER BY Id")["records"]

    assert [r["Id"] for r in rows] == [sfdc_id("00Q", n) for n in range(1, 451)]


def test_the_http_control_route_edits_late(org: Org) -> None:
    before = stamp(org, CONTACT)
    response = httpx.patch(
        f"{org.server.url}/_sandbox/salesforce/records/Contact/{CONTACT}",
        json={"fields": NEW_OPT_OUT, "late_by_s": 3600},
    )

    assert response.status_code == 200
    assert response.json()["SystemModstamp"] < before  # an hour ago, before the seeding
