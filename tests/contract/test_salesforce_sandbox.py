"""The Salesforce sandbox over real HTTP: auth, limits, SOQL, collections, composite,
deletions, echo-prevention stamps and seeded faults (API_NOTES.md, Salesforce REST API)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from sandboxes.base import FaultPlan, SandboxServer
from sandboxes.population import sfdc_id
from sandboxes.salesforce import (
    STATE_KEY,
    SalesforceConfig,
    SalesforceState,
    create_app,
    human_create,
)
from sandboxes.salesforce.soql import parse
from sandboxes.salesforce.soql_eval import compile_query
from sandboxes.salesforce.timefmt import format_datetime

DATA = "/services/data/v62.0"
CREDENTIALS = {
    "grant_type": "client_credentials",
    "client_id": "actions-sync",
    "client_secret": "sandbox-secret",
}
INTEGRATION = SalesforceConfig().integration_user_id
HUMAN = SalesforceConfig().human_user_id
LEAD, CONTACT = sfdc_id("00Q", 1), sfdc_id("003", 7)  # from population seed 7


class Clock:
    """A hand-driven clock for SystemModstamp, session and budget time."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Org:
    app: web.Application
    server: SandboxServer
    http: httpx.Client
    token: str = ""
    login_answer: dict[str, Any] = field(default_factory=dict)

    @property
    def state(self) -> SalesforceState:
        return self.app[STATE_KEY]

    def login(self) -> httpx.Response:
        response = self.http.post("/services/oauth2/token", data=CREDENTIALS)
        if response.status_code == 200:
            self.login_answer = response.json()
            self.token = self.login_answer["access_token"]
        return response

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        url = path if path.startswith("/services") else DATA + path
        return self.http.request(method, url, headers=headers, **kwargs)

    def query(self, soql: str, endpoint: str = "query") -> httpx.Response:
        return self.call("GET", f"/{endpoint}", params={"q": soql})

    def records(self, soql: str) -> list[dict[str, Any]]:
        response = self.query(soql)
        assert response.status_code == 200, response.text
        return list(response.json()["records"])

    def upsert(self, *tasks: dict[str, Any], all_or_none: bool = False) -> httpx.Response:
        body = {"allOrNone": all_or_none, "records": [task_of(t) for t in tasks]}
        return self.call("PATCH", "/composite/sobjects/Task/ActionsSync_Id__c", json=body)

    def create(self, *records: dict[str, Any], all_or_none: bool = False) -> httpx.Response:
        body = {"allOrNone": all_or_none, "records": [task_of(r) for r in records]}
        return self.call("POST", "/composite/sobjects", json=body)

    def usage(self) -> int:
        return self.state.budget.used


def task_of(fields: dict[str, Any]) -> dict[str, Any]:
    return {"attributes": {"type": "Task"}, **fields}


def task(ref: str, **fields: Any) -> dict[str, Any]:
    return {"ActionsSync_Id__c": ref, "Subject": f"Email: {ref}", "WhoId": CONTACT, **fields}


def codes(results: list[dict[str, Any]]) -> list[str | None]:
    return [None if r["success"] else r["errors"][0]["statusCode"] for r in results]


@pytest.fixture
def make_org() -> Iterator[Callable[..., Org]]:
    orgs: list[Org] = []

    def make(clock: Clock | None = None, **options: Any) -> Org:
        config = SalesforceConfig(**{"seed_people": 10, **options})
        app = create_app(config, SalesforceState(config, clock=clock))
        server = SandboxServer(app).start()
        org = Org(app, server, httpx.Client(base_url=server.url, timeout=10))
        orgs.append(org)
        org.login()
        return org

    yield make
    for org in orgs:
        org.http.close()
        org.server.stop()


@pytest.fixture
def org(make_org: Callable[..., Org]) -> Org:
    return make_org()


# -- auth ----------------------------------------------------------------------------------


def test_token_returns_bearer_session_and_own_instance_url(org: Org) -> None:
    answer = org.login().json()

    assert answer["token_type"] == "Bearer"
    assert answer["instance_url"] == org.server.url
    assert set(answer) >= {"access_token", "issued_at", "id", "signature"}
    assert org.call("GET", "/limits").status_code == 200


def test_bad_client_secret_is_invalid_client(org: Org) -> None:
    response = org.http.post(
        "/services/oauth2/token", data={**CREDENTIALS, "client_secret": "wrong"}
    )

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_client"


def test_expired_session_is_invalid_session_id_until_reauth(org: Org) -> None:
    org.http.post("/_sandbox/salesforce/sessions/expire")

    expired = org.query("SELECT Id FROM Lead")
    org.login()

    assert expired.status_code == 401
    assert expired.json() == [
        {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
    ]
    assert org.query("SELECT Id FROM Lead").status_code == 200


def test_session_ttl_expires_sessions(make_org: Callable[..., Org]) -> None:
    clock = Clock()
    org = make_org(clock=clock, session_ttl_s=60)

    fresh = org.query("SELECT Id FROM Lead")
    clock.advance(61)
    stale = org.query("SELECT Id FROM Lead")

    assert (fresh.status_code, stale.status_code) == (200, 401)
    assert stale.json()[0]["errorCode"] == "INVALID_SESSION_ID"


# -- limits --------------------------------------------------------------------------------


def test_every_data_answer_carries_limit_info(org: Org) -> None:
    answers = [
        org.query("SELECT Id FROM Lead"),
        org.query("SELECT Nope FROM Lead"),
        org.call("GET", "/sobjects/Task/00T000000000000099"),
        org.call("GET", "/limits", headers={"Authorization": "Bearer nope"}),
    ]

    assert [a.status_code for a in answers] == [200, 400, 404, 401]
    assert all(a.headers["Sforce-Limit-Info"].startswith("api-usage=") for a in answers)
    assert answers[2].headers["Sforce-Limit-Info"] == "api-usage=3/100000"


def test_exhausted_budget_is_request_limit_exceeded(make_org: Callable[..., Org]) -> None:
    org = make_org(daily_budget=2)
    org.query("SELECT Id FROM Lead")
    org.query("SELECT Id FROM Lead")

    refused = org.query("SELECT Id FROM Lead")
    org.http.post("/_sandbox/salesforce/budget/reset")

    assert refused.status_code == 403
    assert refused.json()[0] == {
        "errorCode": "REQUEST_LIMIT_EXCEEDED",
        "message": "TotalRequests Limit exceeded.",
    }
    assert refused.headers["Sforce-Limit-Info"] == "api-usage=2/2"
    assert "Retry-After" not in refused.headers
    assert org.query("SELECT Id FROM Lead").status_code == 200


def test_budget_window_rolls_over_24_hours(make_org: Callable[..., Org]) -> None:
    clock = Clock()
    org = make_org(clock=clock, daily_budget=1)
    org.query("SELECT Id FROM Lead")

    refused = org.query("SELECT Id FROM Lead")
    clock.advance(24 * 3600)

    assert refused.status_code == 403
    assert org.query("SELECT Id FROM Lead").status_code == 200


# -- queries -------------------------------------------------------------------------------


def test_query_pages_follow_next_records_url(make_org: Callable[..., Org]) -> None:
    org = make_org(query_page_size=4)
    pages = [org.query("SELECT Id, Email FROM Lead ORDER BY Id").json()]
    while not pages[-1]["done"]:
        pages.append(org.call("GET", pages[-1]["nextRecordsUrl"]).json())

    ids = [r["Id"] for page in pages for r in page["records"]]
    assert [len(p["records"]) for p in pages] == [4, 4, 2]
    assert pages[0]["nextRecordsUrl"].startswith(f"{DATA}/query/01g")
    assert pages[0]["totalSize"] == 10 and ids == sorted(set(ids))
    assert pages[1]["records"][0]["attributes"] == {
        "type": "Lead",
        "url": f"{DATA}/sobjects/Lead/{ids[4]}",
    }


@pytest.fixture(scope="module")
def soql_org() -> Iterator[Org]:
    """Four Tasks to filter (subjects sort as Alpha, beta, delta, Gamma's)."""
    app = create_app(SalesforceConfig(seed_people=10))
    rows = [
        ("Alpha", "Completed", "High", 30, "2026-01-10", "Call"),
        ("beta", "Not Started", "Normal", 120, "2026-02-01", "Email"),
        ("Gamma's", "In Progress", "Low", None, None, None),
        ("delta", "Completed", "Normal", 5, "2026-03-01", "Call"),
    ]
    for subject, status, priority, seconds, day, kind in rows:
        human_create(
            app[STATE_KEY],
            "Task",
            {
                "Subject": subject,
                "Status": status,
                "Priority": priority,
                "CallDurationInSeconds": seconds,
                "ActivityDate": day,
                "Type": kind,
            },
        )
    with SandboxServer(app) as server, httpx.Client(base_url=server.url, timeout=10) as http:
        org = Org(app, server, http)
        org.login()
        yield org


def subjects(org: Org, tail: str) -> list[str]:
    return [r["Subject"] for r in org.records(f"SELECT Id, Subject FROM Task {tail}")]


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("Status = 'Completed'", ["Alpha", "delta"]),
        ("Status != 'Completed'", ["beta", "Gamma's"]),
        ("Status <> 'Completed'", ["beta", "Gamma's"]),
        ("CallDurationInSeconds > 29", ["Alpha", "beta"]),
        ("CallDurationInSeconds >= 30", ["Alpha", "beta"]),
        ("CallDurationInSeconds < 30", ["delta"]),
        ("CallDurationInSeconds <= 5", ["delta"]),
        ("CallDurationInSeconds = null", ["Gamma's"]),
        ("Type != null", ["Alpha", "beta", "delta"]),
        ("Priority IN ('High', 'Low')", ["Alpha", "Gamma's"]),
        ("Priority NOT IN ('High', 'Low')", ["beta", "delta"]),
        ("Subject = 'ALPHA'", ["Alpha"]),
        ("Subject = 'Gamma\\'s'", ["Gamma's"]),
        ("Subject LIKE 'al%'", ["Alpha"]),
        ("Subject LIKE '_eta'", ["beta"]),
        ("IsClosed = true", ["Alpha", "delta"]),
        ("IsClosed = FALSE", ["beta", "Gamma's"]),
        ("ActivityDate >= 2026-02-01", ["beta", "delta"]),
        ("SystemModstamp > 2020-01-01T00:00:00Z", ["Alpha", "beta", "delta", "Gamma's"]),
        ("SystemModstamp < 2020-01-01T00:00:00.000+0000", []),
        ("Status = 'Completed' AND Priority = 'High'", ["Alpha"]),
        ("Status = 'Completed' OR Priority = 'Low'", ["Alpha", "delta", "Gamma's"]),
        ("NOT Status = 'Completed'", ["beta", "Gamma's"]),
        ("NOT Status = 'Completed' AND Priority = 'Normal'", ["beta"]),
        ("Priority = 'Normal' AND (Status = 'Completed' OR Type = 'Email')", ["beta", "delta"]),
        (
            "(Priority = 'Normal' AND Status = 'Completed') OR Priority = 'Low'",
            ["delta", "Gamma's"],
        ),
        ("Status = 'Completed' AND (NOT Type = 'Call')", []),
        ("((Type = 'Call'))", ["Alpha", "delta"]),
    ],
)
def test_soql_filters(soql_org: Org, where: str, expected: list[str]) -> None:
    assert subjects(soql_org, f"WHERE {where} ORDER BY Subject") == expected


@pytest.mark.parametrize(
    ("tail", "expected"),
    [
        ("ORDER BY Subject DESC", ["Gamma's", "delta", "beta", "Alpha"]),
        ("ORDER BY Priority, Subject DESC", ["Alpha", "Gamma's", "delta", "beta"]),
        ("ORDER BY CallDurationInSeconds", ["Gamma's", "delta", "Alpha", "beta"]),
        ("ORDER BY CallDurationInSeconds DESC", ["beta", "Alpha", "delta", "Gamma's"]),
        ("ORDER BY CallDurationInSeconds ASC NULLS LAST", ["delta", "Alpha", "beta", "Gamma's"]),
        ("order by subject limit 2", ["Alpha", "beta"]),
        ("ORDER BY Subject LIMIT 2 OFFSET 1", ["beta", "delta"]),
    ],
)
def test_soql_order_by_and_limit(soql_org: Org, tail: str, expected: list[str]) -> None:
    assert subjects(soql_org, tail) == expected


def test_soql_count(soql_org: Org) -> None:
    answer = soql_org.query("SELECT COUNT() FROM Task WHERE IsClosed = true").json()

    assert (answer["totalSize"], answer["records"]) == (2, [])


@pytest.mark.parametrize(
    ("soql", "code"),
    [
        ("SELECT FROM Task", "MALFORMED_QUERY"),
        ("SELECT Id Task", "MALFORMED_QUERY"),
        ("SELECT Id FROM Task WHERE", "MALFORMED_QUERY"),
        (
            "SELECT Id FROM Task WHERE Status = 'a' AND Priority = 'b' OR Type = 'c'",
            "MALFORMED_QUERY",
        ),
        ("SELECT Id FROM Task WHERE Status = 'a' AND NOT Type = 'b'", "MALFORMED_QUERY"),
        ("SELECT Id FROM Task WHERE Status = 'unterminated", "MALFORMED_QUERY"),
        ("SELECT Id FROM Task WHERE Status = Completed", "MALFORMED_QUERY"),
        ("SELECT Id FROM Task WHERE (Status = 'a'", "MALFORMED_QUERY"),
        ("SELECT Id FROM Task WHERE Id IN ()", "MALFORMED_QUERY"),
        ("SELECT Id FROM Task WHERE SystemModstamp > '2026-01-01T00:00:00Z'", "MALFORMED_QUERY"),
        ("SELECT Id FROM Task WHERE SystemModstamp > 2026-01-01T00:00:00", "MALFORMED_QUERY"),
        ("SELECT Id FROM Task WHERE IsClosed > true", "MALFORMED_QUERY"),
        ("SELECT Id FROM Task ORDER Subject", "MALFORMED_QUERY"),
        ("SELECT Id FROM Task LIMIT -1", "MALFORMED_QUERY"),
        ("SELECT Id FROM Task LIMIT 1 garbage", "MALFORMED_QUERY"),
        ("SELECT Foo FROM Task", "INVALID_FIELD"),
        ("SELECT Id FROM Task WHERE Description = 'x'", "INVALID_FIELD"),
        ("SELECT Id, IsConverted FROM Contact", "INVALID_FIELD"),
        ("SELECT Id, Who.Name FROM Task", "INVALID_FIELD"),
        ("SELECT Id FROM Account", "INVALID_TYPE"),
    ],
)
def test_bad_soql_is_refused(soql_org: Org, soql: str, code: str) -> None:
    response = soql_org.query(soql)

    assert response.status_code == 400
    assert response.json()[0]["errorCode"] == code


def test_incremental_polling_resumes_after_timestamp_and_id(make_org: Callable[..., Org]) -> None:
    org = make_org(clock=Clock())
    org.upsert(*[task(f"r{i}") for i in range(5)])  # one call: five equal SystemModstamps
    first = org.records("SELECT Id, SystemModstamp FROM Task ORDER BY SystemModstamp, Id")
    stamp, last_id = first[1]["SystemModstamp"], first[1]["Id"]

    rest = org.records(
        "SELECT Id FROM Task WHERE SystemModstamp > "
        + stamp.replace(".000", "")
        + f" OR (SystemModstamp = {stamp} AND Id > '{last_id}')"
        " ORDER BY SystemModstamp, Id"
    )

    assert [r["Id"] for r in rest] == [r["Id"] for r in first[2:]]


def test_query_all_includes_deleted_records(org: Org) -> None:
    created = org.upsert(task("a"), task("b")).json()
    org.call("DELETE", "/composite/sobjects", params={"ids": created[0]["id"]})

    live = org.records("SELECT Id FROM Task")
    every = org.query("SELECT Id, IsDeleted FROM Task ORDER BY Id", "queryAll").json()

    assert [r["Id"] for r in live] == [created[1]["id"]]
    assert [(r["Id"], r["IsDeleted"]) for r in every["records"]] == [
        (created[0]["id"], True),
        (created[1]["id"], False),
    ]


# -- SOQL properties (in-process) ----------------------------------------------------------


def soql_string(text: str) -> str:
    escapes = {"\\": "\\\\", "'": "\\'", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
    return "'" + "".join(escapes.get(c, c) for c in text) + "'"


@given(st.text(max_size=30))
def test_string_literals_round_trip(text: str) -> None:
    query = parse(f"SELECT Id FROM Task WHERE Subject = {soql_string(text)}")

    assert query.where is not None and query.where.value.value == text  # type: ignore[union-attr]


ATOMS = {"c": "IsClosed = true", "h": "Priority = 'High'", "e": "Type = 'Email'"}
expressions = st.recursive(
    st.sampled_from(sorted(ATOMS)),
    lambda inner: st.one_of(
        st.tuples(st.just("NOT"), inner),
        st.tuples(st.sampled_from(["AND", "OR"]), st.lists(inner, min_size=2, max_size=3)),
    ),
    max_leaves=6,
)


def render(expr: Any) -> str:
    if isinstance(expr, str):
        return ATOMS[expr]
    if expr[0] == "NOT":
        return f"(NOT {render(expr[1])})"
    return "(" + f" {expr[0]} ".join(render(e) for e in expr[1]) + ")"


def truth(expr: Any, row: dict[str, bool]) -> bool:
    if isinstance(expr, str):
        return row[expr]
    if expr[0] == "NOT":
        return not truth(expr[1], row)
    parts = [truth(e, row) for e in expr[1]]
    return all(parts) if expr[0] == "AND" else any(parts)


@settings(max_examples=150)
@given(expressions, st.fixed_dictionaries({k: st.booleans() for k in ATOMS}))
def test_boolean_conditions_evaluate_like_python(expr: Any, row: dict[str, bool]) -> None:
    state = SalesforceState()
    plan = compile_query(parse(f"SELECT Id FROM Task WHERE {render(expr)}"), state.schemas)
    record = {
        "IsClosed": row["c"],
        "Priority": "High" if row["h"] else "Low",
        "Type": "Email" if row["e"] else None,
    }

    assert plan.predicate is not None and plan.predicate(record) is truth(expr, row)


stamps = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2026, 1, 1, 0, 0, 3), timezones=st.just(UTC)
).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))


@given(
    st.lists(st.tuples(stamps, st.integers(1, 99)), unique_by=lambda r: r[1], min_size=1), st.data()
)
def test_polling_query_returns_exactly_rows_after_the_cursor(
    rows: list[tuple[datetime, int]], data: st.DataObject
) -> None:
    state = SalesforceState()
    records = [{"Id": f"00T{n:015d}", "SystemModstamp": format_datetime(t)} for t, n in rows]
    cursor = data.draw(st.sampled_from(records))
    zone = data.draw(st.sampled_from(["Z", "+00:00", "+0000"]))
    moment = cursor["SystemModstamp"].replace("+0000", zone)
    plan = compile_query(
        parse(
            f"SELECT Id FROM Task WHERE SystemModstamp > {moment} OR (SystemModstamp = {moment} "
            f"AND Id > '{cursor['Id']}') ORDER BY SystemModstamp, Id"
        ),
        state.schemas,
    )

    expected = sorted(
        (
            r
            for r in records
            if (r["SystemModstamp"], r["Id"]) > (cursor["SystemModstamp"], cursor["Id"])
        ),
        key=lambda r: (r["SystemModstamp"], r["Id"]),
    )
    assert plan.run(records) == expected


# -- sObject Collections -------------------------------------------------------------------


def test_collection_create_reports_record_errors_in_input_order(org: Org) -> None:
    results = org.create(
        {"Subject": "ok", "WhoId": CONTACT},
        {"WhoId": CONTACT},
        {"Subject": "s" * 256},
        {"Subject": "x", "Colour__c": "red"},
        {"Subject": "x", "WhoId": "003000000000009999"},
        {"Subject": "x", "WhoId": "001000000000000001"},
        {"Subject": "x [[invalid]]"},
        {"Subject": "x", "Status": "Done"},
    ).json()

    assert codes(results) == [
        None,
        "REQUIRED_FIELD_MISSING",
        "STRING_TOO_LONG",
        "INVALID_FIELD",
        "INVALID_CROSS_REFERENCE_KEY",
        "FIELD_INTEGRITY_EXCEPTION",
        "FIELD_CUSTOM_VALIDATION_EXCEPTION",
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
    ]
    assert results[0]["id"].startswith("00T") and len(results[0]["id"]) == 18
    assert org.state.counts()["Task"]["live"] == 1


def test_collection_update_refuses_deleted_records_and_converted_leads(org: Org) -> None:
    created = org.upsert(task("a"), task("b")).json()
    org.call("DELETE", f"/sobjects/Task/{created[1]['id']}")
    org.http.patch(
        f"/_sandbox/salesforce/records/Lead/{LEAD}", json={"fields": {"IsConverted": True}}
    )
    records = [
        {"attributes": {"type": "Task"}, "id": created[0]["id"], "Status": "Completed"},
        {"attributes": {"type": "Task"}, "id": created[1]["id"], "Status": "Completed"},
        {"attributes": {"type": "Lead"}, "id": LEAD, "HasOptedOutOfEmail": True},
        {"attributes": {"type": "Contact"}, "Email": "x@example.com"},
    ]

    results = org.call("PATCH", "/composite/sobjects", json={"records": records}).json()

    assert codes(results) == [
        None,
        "ENTITY_IS_DELETED",
        "CANNOT_UPDATE_CONVERTED_LEAD",
        "MISSING_ARGUMENT",
    ]
    assert [r.get("id") for r in results[:3]] == [created[0]["id"], created[1]["id"], LEAD]


def test_collection_delete_by_ids(org: Org) -> None:
    created = org.upsert(task("a")).json()
    ids = f"{created[0]['id']},00T000000000009999"

    results = org.call("DELETE", "/composite/sobjects", params={"ids": ids}).json()

    assert codes(results) == [None, "INVALID_CROSS_REFERENCE_KEY"]
    assert org.state.counts()["Task"] == {"live": 0, "deleted": 1}


def test_all_or_none_rolls_back_every_record(org: Org) -> None:
    org.upsert(task("kept", Subject="before"))

    results = org.upsert(
        task("kept", Subject="after"), task("new"), task("bad", Subject=""), all_or_none=True
    ).json()

    assert codes(results) == [
        "ALL_OR_NONE_OPERATION_ROLLED_BACK",
        "ALL_OR_NONE_OPERATION_ROLLED_BACK",
        "REQUIRED_FIELD_MISSING",
    ]
    assert [r["Subject"] for r in org.records("SELECT Subject FROM Task")] == ["before"]


def test_collection_over_200_records_is_refused(org: Org) -> None:
    response = org.upsert(*[task(f"r{i}") for i in range(201)])

    assert response.status_code == 400
    assert response.json()[0]["errorCode"] == "EXCEEDED_ID_LIMIT"
    assert org.state.counts()["Task"]["live"] == 0


def test_upsert_by_external_id_is_idempotent(org: Org) -> None:
    first = org.upsert(task("act-1", Status="Not Started")).json()[0]
    second = org.upsert(task("act-1", Status="Completed")).json()[0]

    rows = org.records("SELECT Id, Status, IsClosed FROM Task WHERE ActionsSync_Id__c = 'act-1'")
    assert (first["created"], second["created"]) == (True, False)
    assert first["id"] == second["id"] == rows[0]["Id"] and len(rows) == 1
    assert (rows[0]["Status"], rows[0]["IsClosed"]) == ("Completed", True)


def test_repeated_external_id_in_one_upsert_fails_both_records(org: Org) -> None:
    results = org.upsert(task("dup"), task("other"), task("DUP")).json()

    assert codes(results) == ["DUPLICATE_VALUE", None, "DUPLICATE_VALUE"]


def test_single_upsert_answers_201_then_204(org: Org) -> None:
    path = "/sobjects/Task/ActionsSync_Id__c/act-9"

    created = org.call("PATCH", path, json={"Subject": "Call: hello", "WhoId": LEAD})
    updated = org.call("PATCH", path, json={"Status": "Completed"})

    assert created.status_code == 201
    assert created.json() == {
        "id": created.json()["id"],
        "success": True,
        "errors": [],
        "created": True,
    }
    assert (updated.status_code, updated.content) == (204, b"")
    assert org.call("GET", path).json()["Status"] == "Completed"


def test_single_upsert_matching_two_tasks_answers_300(org: Org) -> None:
    for _ in range(2):
        human_create(org.state, "Task", {"Subject": "twin", "ActionsSync_Id__c": "twin"})

    response = org.call("PATCH", "/sobjects/Task/ActionsSync_Id__c/twin", json={"Subject": "x"})

    assert response.status_code == 300
    assert len(response.json()) == 2


def test_single_record_read_update_delete(org: Org) -> None:
    task_id = org.upsert(task("a")).json()[0]["id"]

    updated = org.call("PATCH", f"/sobjects/Task/{task_id}", json={"Priority": "High"})
    read = org.call("GET", f"/sobjects/Task/{task_id}", params={"fields": "Priority"})
    deleted = org.call("DELETE", f"/sobjects/Task/{task_id}")
    again = org.call("PATCH", f"/sobjects/Task/{task_id}", json={"Priority": "Low"})

    assert (updated.status_code, deleted.status_code) == (204, 204)
    assert read.json()["Priority"] == "High"
    assert (again.status_code, again.json()[0]["errorCode"]) == (404, "ENTITY_IS_DELETED")


# -- composite -----------------------------------------------------------------------------


def test_composite_of_25_subrequests_counts_as_one_call(org: Org) -> None:
    subrequests = [
        {
            "method": "PATCH",
            "url": f"{DATA}/sobjects/Task/ActionsSync_Id__c/c{i}",
            "referenceId": f"t{i}",
            "body": {"Subject": f"s{i}"},
        }
        for i in range(25)
    ]
    before = org.usage()

    answer = org.call("POST", "/composite", json={"compositeRequest": subrequests}).json()

    assert [r["httpStatusCode"] for r in answer["compositeResponse"]] == [201] * 25
    assert org.usage() == before + 1
    assert org.state.counts()["Task"]["live"] == 25


def test_composite_limits_subrequests(org: Org) -> None:
    query = {"method": "GET", "url": f"{DATA}/query?q=SELECT+Id+FROM+Task"}
    six_queries = [{**query, "referenceId": f"q{i}"} for i in range(6)]
    many = [{**query, "url": f"{DATA}/limits", "referenceId": f"l{i}"} for i in range(26)]

    answers = [
        org.call("POST", "/composite", json={"compositeRequest": r}) for r in (six_queries, many)
    ]

    assert [a.status_code for a in answers] == [400, 400]


def test_composite_references_and_all_or_none(org: Org) -> None:
    subrequests = [
        {
            "method": "POST",
            "url": f"{DATA}/sobjects/Task",
            "referenceId": "made",
            "body": {"Subject": "first", "WhoId": CONTACT},
        },
        {
            "method": "PATCH",
            "url": f"{DATA}/sobjects/Task/@{{made.id}}",
            "referenceId": "edit",
            "body": {"Status": "Completed"},
        },
        {"method": "POST", "url": f"{DATA}/sobjects/Task", "referenceId": "bad", "body": {}},
        {"method": "GET", "url": f"{DATA}/limits", "referenceId": "after"},
    ]

    answer = org.call(
        "POST", "/composite", json={"allOrNone": True, "compositeRequest": subrequests}
    ).json()

    statuses = [
        (r["httpStatusCode"], r["body"][0]["errorCode"]) for r in answer["compositeResponse"]
    ]
    assert statuses == [
        (400, "PROCESSING_HALTED"),
        (400, "PROCESSING_HALTED"),
        (400, "REQUIRED_FIELD_MISSING"),
        (400, "PROCESSING_HALTED"),
    ]
    assert org.state.counts()["Task"]["live"] == 0


# -- deletions -----------------------------------------------------------------------------


def test_deleted_endpoint_lists_task_deletions_in_window(make_org: Callable[..., Org]) -> None:
    clock = Clock()
    org = make_org(clock=clock)
    ids = [r["id"] for r in org.upsert(task("a"), task("b")).json()]
    clock.advance(60)
    org.call("DELETE", "/composite/sobjects", params={"ids": ",".join(ids)})
    clock.advance(60)

    window = {"start": "2026-11-23T18:00:30Z", "end": "2026-11-23T18:05:00+00:00"}
    answer = org.call("GET", "/sobjects/Task/deleted/", params=window).json()

    assert answer["deletedRecords"] == [
        {"id": i, "deletedDate": "2026-11-23T18:01:00.000+0000"} for i in ids
    ]
    assert answer["latestDateCovered"] == "2026-11-23T18:02:00.000+0000"
    assert answer["earliestDateAvailable"] == "2026-11-08T18:02:00.000+0000"  # 15 days


def test_deleted_endpoint_refuses_start_beyond_horizon(org: Org) -> None:
    start = format_datetime(datetime.now(UTC) - timedelta(days=16))  # the bin keeps 15

    response = org.call(
        "GET",
        "/sobjects/Task/deleted/",
        params={"start": start, "end": format_datetime(datetime.now(UTC))},
    )

    assert (response.status_code, response.json()[0]["errorCode"]) == (
        400,
        "INVALID_REPLICATION_DATE",
    )


# -- who wrote what (echo prevention) ------------------------------------------------------


def test_api_writes_carry_the_integration_user(org: Org) -> None:
    org.upsert(task("a"))
    org.call(
        "PATCH",
        "/composite/sobjects",
        json={
            "records": [
                {"attributes": {"type": "Contact"}, "id": CONTACT, "HasOptedOutOfEmail": True}
            ]
        },
    )

    rows = org.records("SELECT LastModifiedById FROM Task") + org.records(
        f"SELECT LastModifiedById FROM Contact WHERE Id = '{CONTACT}'"
    )

    assert [r["LastModifiedById"] for r in rows] == [INTEGRATION, INTEGRATION]


def test_control_route_edits_carry_another_user(org: Org) -> None:
    opted = org.http.patch(
        f"/_sandbox/salesforce/records/Contact/{CONTACT}",
        json={"fields": {"HasOptedOutOfEmail": True}},
    )
    made = org.http.post(
        "/_sandbox/salesforce/records/Task",
        json={
            "fields": {"Subject": "Follow up", "WhoId": CONTACT},
            "user_id": "005000000000000003",
        },
    )

    contact = org.records(
        f"SELECT HasOptedOutOfEmail, LastModifiedById FROM Contact WHERE Id = '{CONTACT}'"
    )[0]
    assert (contact["HasOptedOutOfEmail"], contact["LastModifiedById"]) == (True, HUMAN)
    assert made.status_code == 201 and opted.status_code == 200
    assert made.json()["LastModifiedById"] == "005000000000000003"


def test_control_route_seed_creates_leads_and_contacts(make_org: Callable[..., Org]) -> None:
    org = make_org(seed_people=0)

    made = org.http.post("/_sandbox/salesforce/seed", json={"people": 50, "seed": 7}).json()
    contacts = org.records("SELECT Id, OwnerId, Email, HasOptedOutOfEmail FROM Contact")

    assert made["Lead"] == 50 and made["Contact"] == len(contacts) > 0
    assert all(c["OwnerId"].startswith("005") and not c["HasOptedOutOfEmail"] for c in contacts)
    assert org.http.get("/_sandbox/salesforce/counts").json()["Lead"]["live"] == 50


# -- seeded faults -------------------------------------------------------------------------


def test_lock_errors_are_reproducible_with_a_seed(make_org: Callable[..., Org]) -> None:
    runs = []
    for _ in range(2):
        org = make_org(lock_error_rate=0.3, faults=FaultPlan(seed=3))
        runs.append(codes(org.upsert(*[task(f"r{i}") for i in range(20)]).json()))

    assert runs[0] == runs[1]
    assert set(runs[0]) == {None, "UNABLE_TO_LOCK_ROW"}


def test_lock_errors_per_request_fail_the_whole_batch(make_org: Callable[..., Org]) -> None:
    org = make_org(lock_error_rate=1.0, lock_error_scope="request")

    results = org.upsert(task("a"), task("b")).json()
    single = org.call("PATCH", "/sobjects/Task/ActionsSync_Id__c/c", json={"Subject": "x"})

    assert codes(results) == ["UNABLE_TO_LOCK_ROW", "UNABLE_TO_LOCK_ROW"]
    assert (single.status_code, single.json()[0]["errorCode"]) == (400, "UNABLE_TO_LOCK_ROW")


def test_server_errors_are_reproducible_with_a_seed(make_org: Callable[..., Org]) -> None:
    runs = []
    for _ in range(2):
        org = make_org(faults=FaultPlan(seed=5, error_rate=0.4))
        runs.append([org.call("GET", "/limits") for _ in range(15)])

    statuses = [[r.status_code for r in run] for run in runs]
    assert statuses[0] == statuses[1] and {500, 503, 200} <= set(statuses[0])
    failed = [r for r in runs[0] if r.status_code >= 500]
    assert {r.json()[0]["errorCode"] for r in failed} == {"SERVER_UNAVAILABLE"}


# -- describe and protocol limits ----------------------------------------------------------


def test_describe_lists_the_custom_opt_out_field(org: Org) -> None:
    fields = {f["name"]: f for f in org.call("GET", "/sobjects/Contact/describe").json()["fields"]}

    assert fields["ActionsSync_Opt_Out__c"]["type"] == "boolean"
    assert fields["HasOptedOutOfEmail"]["updateable"] is True
    assert fields["LastModifiedById"]["updateable"] is False


def test_uri_longer_than_16k_is_refused_with_414(org: Org) -> None:
    ids = ",".join(f"'00Q{n:015d}'" for n in range(800))

    response = org.query(f"SELECT Id FROM Lead WHERE Id IN ({ids})")

    assert response.status_code == 414
    assert response.headers["Sforce-Limit-Info"] == "api-usage=0/100000"


def test_a_marked_value_refuses_the_whole_request_with_json_parser_error(org: Org) -> None:
    response = org.upsert(task("ok-1"), task("bad-1", Description="x [[refuse-call]]"))

    assert response.status_code == 400
    assert response.json()[0]["errorCode"] == "JSON_PARSER_ERROR"
    assert org.state.counts()["Task"]["live"] == 0
