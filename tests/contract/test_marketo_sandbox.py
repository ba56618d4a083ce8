"""The Marketo sandbox honours the Marketo REST API facts of API_NOTES.md, over real HTTP."""

from __future__ import annotations

import csv
import hashlib
import io
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import pytest

from sandboxes.base import FaultPlan, Faults, SandboxServer
from sandboxes.marketo import STATE_KEY, MarketoConfig, MarketoState, create_app
from sandboxes.population import generate, sfdc_id

BASE = MarketoConfig(seed_people=30, export_processing_s=0.05)
CREDENTIALS = {
    "grant_type": "client_credentials",
    "client_id": BASE.client_id,
    "client_secret": BASE.client_secret,
}
EXPORT = "/bulk/v1/leads/export"
# the population's first month (sandboxes.population.EPOCH)
JANUARY = {"createdAt": {"startAt": "2025-01-01T00:00:00Z", "endAt": "2025-01-31T23:59:59Z"}}
SALES_EMAIL = {
    "apiName": "sendSalesEmail",
    "name": "Send Sales Email",
    "triggerName": "Sent Sales Email",
    "filterName": "Was Sent Sales Email",
    "primaryAttribute": {"apiName": "emailSubject", "name": "Email Subject", "dataType": "string"},
}


@dataclass
class Marketo:
    """One running sandbox and an HTTP client that speaks to it like a connector."""

    server: SandboxServer
    http: httpx.Client
    state: MarketoState
    _token: str | None = field(default=None, init=False)

    def token(self) -> str:
        self._token = (
            self._token
            or self.http.get("/identity/oauth/token", params=CREDENTIALS).json()["access_token"]
        )
        return self._token

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token()}", **kwargs.pop("headers", {})}
        return self.http.request(method, path, headers=headers, **kwargs)

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        return dict(self.call("GET", path, params=params).json())

    def post(self, path: str, body: Any = None, **params: Any) -> dict[str, Any]:
        return dict(self.call("POST", path, json=body, params=params).json())

    def control(self, path: str, body: Any = None) -> Any:
        return self.http.post(f"/_sandbox/marketo/{path}", json=body).json()

    def sync(self, *records: dict[str, Any], **body: Any) -> list[dict[str, Any]]:
        return list(self.post("/rest/v1/leads.json", {"input": list(records), **body})["result"])

    def changes_token(self) -> str:
        since = {"sinceDatetime": "2020-01-01T00:00:00Z"}
        return str(self.get("/rest/v1/activities/pagingtoken.json", **since)["nextPageToken"])

    def export(
        self,
        filter: dict[str, Any] = JANUARY,
        fields: tuple[str, ...] = ("id", "email"),
        **extra: Any,
    ) -> dict[str, Any]:
        body = {"fields": list(fields), "format": "CSV", "filter": filter, **extra}
        return dict(self.post(f"{EXPORT}/create.json", body))

    def wait_export(self, export_id: str, status: str = "Completed") -> dict[str, Any]:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            job = dict(self.get(f"{EXPORT}/{export_id}/status.json")["result"][0])
            if job["status"] == status:
                return job
            time.sleep(0.02)
        raise AssertionError(f"export {export_id} never reached {status}")

    def approved_type(self, *attributes: str) -> int:
        type_id = int(
            self.post("/rest/v1/activities/external/type.json", SALES_EMAIL)["result"][0]["id"]
        )
        if attributes:
            body = {
                "attribute": [{"apiName": a, "name": a, "dataType": "string"} for a in attributes]
            }
            self.post(
                "/rest/v1/activities/external/type/sendSalesEmail/attributes/create.json", body
            )
        self.post("/rest/v1/activities/external/type/sendSalesEmail/approve.json")
        return type_id


@pytest.fixture
def marketo() -> Iterator[Callable[..., Marketo]]:
    """Start a sandbox: `marketo(rate_calls=5)` overrides `BASE`."""
    running: list[Marketo] = []

    def start(**overrides: Any) -> Marketo:
        config = replace(BASE, **overrides)
        app = create_app(config)
        server = SandboxServer(app).start()
        running.append(Marketo(server, httpx.Client(base_url=server.url), app[STATE_KEY]))
        return running[-1]

    yield start
    for sandbox in running:
        sandbox.http.close()
        sandbox.server.stop()


def code(body: dict[str, Any]) -> str | None:
    """The vendor error code of an envelope, None on success."""
    return None if body["success"] else str(body["errors"][0]["code"])


def activity(type_id: int, lead_id: int, subject: str = "Hi (SIA-1)") -> dict[str, Any]:
    return {
        "leadId": lead_id,
        "activityDate": "2026-03-01T10:00:00Z",
        "activityTypeId": type_id,
        "primaryAttributeValue": subject,
        "attributes": [{"apiName": "source", "value": "Sales App"}],
    }


# -- auth -------------------------------------------------------------------------------


def test_same_token_until_expiry_with_remaining_lifetime(marketo: Callable[..., Marketo]) -> None:
    sandbox = marketo()

    first = sandbox.http.get("/identity/oauth/token", params=CREDENTIALS).json()
    again = sandbox.http.post("/identity/oauth/token", params=CREDENTIALS).json()

    assert again["access_token"] == first["access_token"]
    assert first["token_type"] == "bearer" and 3590 <= again["expires_in"] <= 3600


def test_bad_credentials_are_http_401(marketo: Callable[..., Marketo]) -> None:
    sandbox = marketo()

    response = sandbox.http.get(
        "/identity/oauth/token", params={**CREDENTIALS, "client_secret": "wrong"}
    )

    assert response.status_code == 401


def test_missing_or_unknown_token_is_601(marketo: Callable[..., Marketo]) -> None:
    sandbox = marketo()
    query = {"filterType": "id", "filterValues": "1"}

    missing = sandbox.http.get("/rest/v1/leads.json", params=query).json()
    unknown = sandbox.http.get(
        "/rest/v1/leads.json", params=query, headers={"Authorization": "Bearer nope"}
    ).json()

    assert code(missing) == code(unknown) == "601"


def test_expired_token_is_602_and_identity_issues_a_new_one(
    marketo: Callable[..., Marketo],
) -> None:
    sandbox = marketo()
    old = sandbox.token()

    sandbox.control("tokens/expire")
    answer = sandbox.get("/rest/v1/leads.json", filterType="id", filterValues="1")

    assert code(answer) == "602"
    assert (
        sandbox.http.get("/identity/oauth/token", params=CREDENTIALS).json()["access_token"] != old
    )


def test_token_expiry_fault_expires_tokens_without_telling(marketo: Callable[..., Marketo]) -> None:
    sandbox = marketo(token_expiry_s=0.2)
    issued = sandbox.http.get("/identity/oauth/token", params=CREDENTIALS).json()

    time.sleep(0.3)
    answer = sandbox.http.get(
        "/rest/v1/leads/describe.json",
        headers={"Authorization": f"Bearer {issued['access_token']}"},
    )

    assert issued["expires_in"] > 3000
    assert code(answer.json()) == "602"


def test_deprecated_access_token_query_parameter_is_accepted(
    marketo: Callable[..., Marketo],
) -> None:
    sandbox = marketo()

    answer = sandbox.http.get(
        "/rest/v1/leads.json",
        params={"filterType": "id", "filterValues": "1", "access_token": sandbox.token()},
    ).json()

    assert answer["success"] is True and answer["result"][0]["id"] == 1


# -- limits -----------------------------------------------------------------------------


def test_606_after_rate_limit_within_a_rolling_window(marketo: Callable[..., Marketo]) -> None:
    sandbox = marketo(rate_calls=5, rate_window_s=0.5)

    answers = [
        sandbox.get("/rest/v1/leads.json", filterType="id", filterValues="1") for _ in range(6)
    ]
    time.sleep(0.55)

    assert [code(a) for a in answers] == [None] * 5 + ["606"]
    assert answers[-1]["errors"][0]["message"] == "Max rate limit '5' exceeded with in '0.5' secs"
    assert sandbox.get("/rest/v1/leads.json", filterType="id", filterValues="1")["success"]


def test_identity_calls_and_6xx_errors_do_not_count(marketo: Callable[..., Marketo]) -> None:
    sandbox = marketo(rate_calls=2, daily_quota=2)
    for _ in range(5):
        sandbox.http.get("/identity/oauth/token", params=CREDENTIALS)
        sandbox.http.get("/rest/v1/leads.json")  # 601

    answers = [
        sandbox.get("/rest/v1/leads.json", filterType="id", filterValues="1") for _ in range(2)
    ]

    assert [code(a) for a in answers] == [None, None]
    assert sandbox.state.counts()["quota_used"] == 2


def test_615_when_more_calls_are_in_flight_than_allowed(marketo: Callable[..., Marketo]) -> None:
    # 2 s a call, the 5 calls sent at once: they overlap even on a loaded machine
    sandbox = marketo(max_concurrent=2, faults=FaultPlan(latency_ms=2000))
    sandbox.token()
    together = threading.Barrier(5)

    def call(_: int) -> dict[str, Any]:
        together.wait(30)
        return sandbox.get("/rest/v1/leads/describe.json")

    with ThreadPoolExecutor(max_workers=5) as pool:
        answers = list(pool.map(call, range(5)))

    codes = [code(a) for a in answers]
    assert "615" in codes and codes.count(None) <= 2


def test_607_when_daily_quota_is_spent_until_reset(marketo: Callable[..., Marketo]) -> None:
    sandbox = marketo(daily_quota=2)
    for _ in range(2):
        sandbox.get("/rest/v1/leads/describe.json")

    spent = sandbox.get("/rest/v1/leads/describe.json")
    sandbox.control("quota/reset")

    assert code(spent) == "607"
    assert sandbox.get("/rest/v1/leads/describe.json")["success"] is True


def test_more_than_300_records_or_values_is_1003(marketo: Callable[..., Marketo]) -> None:
    sandbox = marketo()
    records = [{"email": f"p{i}@example.com"} for i in range(301)]

    write = sandbox.post("/rest/v1/leads.json", {"input": records})
    read = sandbox.call(
        "POST",
        "/rest/v1/leads.json",
        params={"_method": "GET"},
        data={"filterType": "id", "filterValues": ",".join(map(str, range(301)))},
    )

    assert code(write) == code(read.json()) == "1003"


def test_payload_over_1_mb_is_http_413(marketo: Callable[..., Marketo]) -> None:
    sandbox = marketo()

    response = sandbox.call(
        "POST",
        "/rest/v1/leads.json",
        json={"input": [{"email": "a@b.c", "title": "x" * 1_000_001}]},
    )

    assert response.status_code == 413


def test_uri_over_8_kb_is_http_414(marketo: Callable[..., Marketo]) -> None:
    sandbox = marketo()

    response = sandbox.call(
        "GET", "/rest/v1/leads.json", params={"filterType": "email", "filterValues": "x" * 8200}
    )

    assert response.status_code == 414


def test_long_filter_lists_fit_in_a_form_post_with_method_get(
    marketo: Callable[..., Marketo],
) -> None:
    sandbox = marketo()
    emails = ",".join(f"someone.with.a.long.address{i}@example.com" for i in range(250))

    response = sandbox.call(
        "POST",
        "/rest/v1/leads.json",
        params={"_method": "GET"},
        data={
            "filterType": "email",
            "filterValues": f"person1@example.com,{emails}",
            "fields": "email",
        },
    )

    assert response.json()["result"] == [{"id": 1, "email": "person1@example.com"}]


# -- leads ------------------------------------------------------------------------------


def test_unknown_field_is_1006(marketo: Callable[..., Marketo]) -> None:
    sandbox = marketo()

    answer = sandbox.get(
        "/rest/v1/leads.json", filterType="id", filterValues="1", fields="email,shoeSize"
    )

    assert code(answer) == "1006"


def test_lead_has_marketo_names_for_population_fields(marketo: Callable[..., Marketo]) -> None:
    sandbox = marketo()
    person = next(generate(1, seed=BASE.seed))
    fields = "firstName,linkedInProfileURL,leadSource,sfdcLeadId,sfdcContactOwnerId,createdAt"

    lead = sandbox.get("/rest/v1/leads.json", filterType="id", filterValues="1", fields=fields)[
        "result"
    ][0]

    assert lead == {
        "id": 1,
        "firstName": person["first_name"],
        "linkedInProfileURL": person["linkedin_url"],
        "leadSource": person["source"],
        "sfdcLeadId": person["sfdc_lead_id"],
        "sfdcContactOwnerId": person["sfdc_contact_owner_id"],
        "createdAt": person["created_at"].strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def test_leads_are_found_by_salesforce_ids(marketo: Callable[..., Marketo]) -> None:
    sandbox = marketo()
    contact = next(p for p in generate(30, seed=BASE.seed) if p["sfdc_contact_id"])

    by_lead = sandbox.get(
        "/rest/v1/leads.json", filterType="sfdcLeadId", filterValues=sfdc_id("00Q", 2), fields="id"
    )
    by_contact = sandbox.get(
        "/rest/v1/leads.json",
        filterType="sfdcContactId",
        filterValues=contact["sfdc_contact_id"],
        fields="id",
    )

    assert by_lead["result"] == [{"id": 2}]
    assert by_contact["result"] == [{"id": contact["marketo_id"]}]


def test_no_match_is_success_with_empty_result(marketo: Callable[..., Marketo]) -> None:
    sandbox = marketo()

    answer = sandbox.get(
        "/rest/v1/leads.json", filterType="email", filterValues="nobody@example.com"
    )

    assert answer["success"] is True and answer["result"] == []


def test_create_or_update_answers_per_record_in_input_order(
    marketo: Callable[..., Marketo],
) -> None:
    sandbox = marketo()

    results = sandbox.sync(
        {"email": "new@example.com", "firstName": "Ada"},
        {"email": "person2@example.com", "title": "CTO"},
        {"firstName": "no email"},
        {"email": "x@y.z", "shoeSize": 9},
    )

    assert [r["status"] for r in results] == ["created", "updated", "skipped", "skipped"]
    assert results[0]["id"] == 31 and results[1]["id"] == 2
    assert [r["reasons"][0]["code"] for r in results[2:]] == ["1003", "1006"]


def test_create_only_and_update_only_skip_what_they_may_not_touch(
    marketo: Callable[..., Marketo],
) -> None:
    sandbox = marketo()

    create_only = sandbox.sync({"email": "person1@example.com"}, action="createOnly")
    update_only = sandbox.sync({"email": "ghost@example.com"}, action="updateOnly")
    by_id = sandbox.sync({"id": 3, "phone": "+1"}, lookupField="id")

    assert create_only[0]["reasons"][0]["code"] == "1005"
    assert update_only[0]["reasons"][0]["code"] == "1004"
    assert by_id == [{"id": 3, "status": "updated"}]


def test_unsubscribe_check_reads_unsubscribed_by_email(marketo: Callable[..., Marketo]) -> None:
    sandbox = marketo()
    sandbox.sync({"email": "person4@example.com", "unsubscribed": True})

    answer = sandbox.get(
        "/rest/v1/leads.json",
        filterType="email",
        filterValues="person4@example.com",
        fields="unsubscribed",
    )

    assert answer["result"] == [{"id": 4, "unsubscribed": True}]


def test_create_duplicate_makes_a_second_lead_with_the_same_email(
    marketo: Callable[..., Marketo],
) -> None:
    sandbox = marketo()

    created = sandbox.sync({"email": "person5@example.com"}, action="createDuplicate")
    upsert = sandbox.sync({"email": "person5@example.com", "phone": "+1"})
    found = sandbox.get(
        "/rest/v1/leads.json",
        filterType="email",
        filterValues="person5@example.com",
        fields="email",
    )

    assert created[0]["status"] == "created" and created[0]["id"] == 31
    assert upsert[0]["reasons"][0]["code"] == "1007"  # the lookup now matches two leads
    assert [lead["id"] for lead in found["result"]] == [5, 31]


def test_unsubscribe_is_durable_for_new_leads_with_the_email(
    marketo: Callable[..., Marketo],
) -> None:
    sandbox = marketo()
    sandbox.sync({"email": "person6@example.com", "unsubscribed": True})

    sandbox.sync({"email": "person6@example.com", "unsubscribed": False}, action="createDuplicate")
    sandbox.sync({"email": "person7@example.com"}, action="createDuplicate")
    sandbox.sync({"id": 7, "unsubscribed": True}, lookupField="id")  # one of two leads
    found = sandbox.get(
        "/rest/v1/leads.json",
        filterType="email",
        filterValues="person6@example.com,person7@example.com",
        fields="email,unsubscribed",
    )

    assert found["result"] == [
        {"id": 6, "email": "person6@example.com", "unsubscribed": True},
        {"id": 7, "email": "person7@example.com", "unsubscribed": True},
        {"id": 31, "email": "person6@example.com", "unsubscribed": True},
        {"id": 32, "email": "person7@example.com", "unsubscribed": False},
    ]


def test_method_get_may_be_a_form_field_and_needs_a_form_body(
    marketo: Callable[..., Marketo],
) -> None:
    sandbox = marketo()

    in_form = sandbox.call(
        "POST",
        "/rest/v1/leads.json",
        data={
            "_method": "GET",
            "filterType": "email",
            "filterValues": "person2@example.com",
            "fields": "email",
        },
    ).json()
    as_json = sandbox.call(
        "POST",
        "/rest/v1/leads.json",
        params={"_method": "GET"},
        json={"filterType": "email", "filterValues": "person2@example.com"},
    )

    assert in_form["result"] == [{"id": 2, "email": "person2@example.com"}]
    assert code(as_json.json()) == "612"


def test_latency_jitter_is_drawn_per_call_from_the_seed() -> None:
    plan = FaultPlan(seed=5, latency_jitter_ms=400)

    runs = [
        [f.draw(f.plan.latency_jitter_ms) for _ in range(20)] for f in (Faults(plan), Faults(plan))
    ]

    assert runs[0] == runs[1]  # reproducible
    assert all(0 <= ms <= 400 for ms in runs[0]) and len(set(runs[0])) == 20  # per call
    assert Faults(FaultPlan(seed=5)).draw(0.0) == 0.0


def test_lead_query_pages_with_next_page_token(marketo: Callable[..., Marketo]) -> None:
    sandbox = marketo()
    query = {"filterType": "id", "filterValues": "1,2,3", "fields": "id", "batchSize": 2}

    first = sandbox.get("/rest/v1/leads.json", **query)
    second = sandbox.get("/rest/v1/leads.json", **query, nextPageToken=first["nextPageToken"])

    assert [r["id"] for r in first["result"] + second["result"]] == [1, 2, 3]
    assert "nextPageToken" not in second


# -- lead changes and deleted leads -----------------------------------------------------


def test_new_lead_logs_new_lead_then_its_values(marketo: Callable[..., Marketo]) -> None:
    sandbox = marketo()
    token = sandbox.changes_token()
    sandbox.sync({"email": "new@example.com", "firstName": "Ada"})

    page = sandbox.get(
        "/rest/v1/activities/leadchanges.json", nextPageToken=token, fields="firstName,email"
    )

    assert [a["activityTypeId"] for a in page["result"]] == [12, 13]
    assert {f["name"]: (f["oldValue"], f["newValue"]) for f in page["result"][1]["fields"]} == {
        "email": (None, "new@example.com"),
        "firstName": (None, "Ada"),
    }


def test_lead_changes_pages_may_be_short_while_more_results_remain(
    marketo: Callable[..., Marketo],
) -> None:
    sandbox = marketo()
    token = sandbox.changes_token()
    for lead in range(1, 6):  # phone changes are not asked for: filtered out of pages
        sandbox.sync({"id": lead, "phone": f"+{lead}"}, lookupField="id")
        sandbox.sync({"id": lead, "title": f"T{lead}"}, lookupField="id")

    pages: list[dict[str, Any]] = []
    while not pages or pages[-1]["moreResult"]:
        pages.append(
            sandbox.get(
                "/rest/v1/activities/leadchanges.json",
                fields="title",
                batchSize=3,
                nextPageToken=token,
            )
        )
        token = pages[-1]["nextPageToken"]

    assert any(len(p["result"]) < 3 and p["moreResult"] for p in pages)
    assert [a["leadId"] for p in pages for a in p["result"]] == [1, 2, 3, 4, 5]


def test_update_that_changes_nothing_logs_nothing(marketo: Callable[..., Marketo]) -> None:
    sandbox = marketo()
    token = sandbox.changes_token()

    sandbox.sync({"email": "person1@example.com"})
    page = sandbox.get("/rest/v1/activities/leadchanges.json", nextPageToken=token, fields="email")

    assert page["result"] == [] and page["moreResult"] is False and page["nextPageToken"]


def test_deleted_leads_are_logged_and_no_longer_found(marketo: Callable[..., Marketo]) -> None:
    sandbox = marketo()
    token = sandbox.changes_token()

    deleted = sandbox.post("/rest/v1/leads/delete.json", {"input": [{"id": 5}, {"id": 999}]})
    sandbox.control("leads/delete", {"ids": [6]})
    page = sandbox.get("/rest/v1/activities/deletedleads.json", nextPageToken=token)

    assert [r["status"] for r in deleted["result"]] == ["deleted", "skipped"]
    assert [(a["leadId"], a["activityTypeId"]) for a in page["result"]] == [(5, 37), (6, 37)]
    assert sandbox.get("/rest/v1/leads.json", filterType="id", filterValues="5")["result"] == []


def test_paging_token_of_the_present_sees_only_later_changes(
    marketo: Callable[..., Marketo],
) -> None:
    sandbox = marketo()
    sandbox.sync({"id": 1, "title": "Before"}, lookupField="id")
    time.sleep(1.1)  # paging tokens are asked for with second precision
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    token = sandbox.get("/rest/v1/activities/pagingtoken.json", sinceDatetime=now)["nextPageToken"]

    sandbox.sync({"id": 2, "title": "After"}, lookupField="id")
    page = sandbox.get("/rest/v1/activities/leadchanges.json", nextPageToken=token, fields="title")

    assert [a["leadId"] for a in page["result"]] == [2]


# -- bulk lead extract ------------------------------------------------------------------


def test_export_lifecycle_ends_with_a_verifiable_csv(marketo: Callable[..., Marketo]) -> None:
    sandbox = marketo()
    export_id = sandbox.export(fields=("id", "email", "unsubscribed"))["result"][0]["exportId"]

    queued = sandbox.post(f"{EXPORT}/{export_id}/enqueue.json")["result"][0]
    job = sandbox.wait_export(export_id)
    body = sandbox.call("GET", f"{EXPORT}/{export_id}/file.json").content

    rows = list(csv.reader(io.StringIO(body.decode())))
    january = [p for p in generate(30, seed=BASE.seed) if p["created_at"].month == 1]
    assert queued["status"] == "Queued"
    assert rows[0] == ["id", "email", "unsubscribed"]
    assert [int(r[0]) for r in rows[1:]] == [p["marketo_id"] for p in january]
    assert job["numberOfRecords"] == len(january) and job["fileSize"] == len(body)
    assert job["fileChecksum"] == f"sha256:{hashlib.sha256(body).hexdigest()}"


def test_export_file_serves_byte_ranges_with_206(marketo: Callable[..., Marketo]) -> None:
    sandbox = marketo()
    export_id = sandbox.export()["result"][0]["exportId"]
    sandbox.post(f"{EXPORT}/{export_id}/enqueue.json")
    sandbox.wait_export(export_id)
    whole = sandbox.call("GET", f"{EXPORT}/{export_id}/file.json").content

    part = sandbox.call("GET", f"{EXPORT}/{export_id}/file.json", headers={"Range": "bytes=5-20"})

    assert part.status_code == 206 and part.content == whole[5:21]
    assert part.headers["Content-Range"] == f"bytes 5-20/{len(whole)}"


def test_export_file_is_a_stable_snapshot(marketo: Callable[..., Marketo]) -> None:
    sandbox = marketo()
    export_id = sandbox.export(fields=("id", "title"))["result"][0]["exportId"]
    sandbox.post(f"{EXPORT}/{export_id}/enqueue.json")
    checksum = sandbox.wait_export(export_id)["fileChecksum"]

    sandbox.control(
        "leads",
        {"input": [{"id": n, "title": "Changed"} for n in range(1, 31)], "lookupField": "id"},
    )
    body = sandbox.call("GET", f"{EXPORT}/{export_id}/file.json").content

    assert f"sha256:{hashlib.sha256(body).hexdigest()}" == checksum
    assert b"Changed" not in body


def test_export_file_is_404_until_completed_and_while_late(marketo: Callable[..., Marketo]) -> None:
    sandbox = marketo(late_file_rate=1.0, late_file_s=0.3)
    export_id = sandbox.export()["result"][0]["exportId"]
    file = f"{EXPORT}/{export_id}/file.json"

    before = sandbox.call("GET", file).status_code
    sandbox.post(f"{EXPORT}/{export_id}/enqueue.json")
    sandbox.wait_export(export_id)
    late = sandbox.call("GET", file).status_code
    time.sleep(0.35)

    assert (before, late, sandbox.call("GET", file).status_code) == (404, 404, 200)


def test_control_route_makes_a_completed_file_late(marketo: Callable[..., Marketo]) -> None:
    sandbox = marketo()
    export_id = sandbox.export()["result"][0]["exportId"]
    sandbox.post(f"{EXPORT}/{export_id}/enqueue.json")
    sandbox.wait_export(export_id)

    sandbox.control(f"exports/{export_id}/late", {"seconds": 60})

    assert sandbox.call("GET", f"{EXPORT}/{export_id}/file.json").status_code == 404


def test_export_window_over_31_days_is_1003(marketo: Callable[..., Marketo]) -> None:
    sandbox = marketo()

    answer = sandbox.export(
        {"createdAt": {"startAt": "2025-01-01T00:00:00Z", "endAt": "2025-02-02T00:00:00Z"}}
    )

    assert code(answer) == "1003"


def test_too_many_queued_exports_is_1029(marketo: Callable[..., Marketo]) -> None:
    sandbox = marketo(export_max_running=1, export_max_queued=1, export_processing_s=30)
    ids = [sandbox.export()["result"][0]["exportId"] for _ in range(3)]
    sandbox.post(f"{EXPORT}/{ids[0]}/enqueue.json")
    sandbox.wait_export(ids[0], "Processing")

    queued = sandbox.post(f"{EXPORT}/{ids[1]}/enqueue.json")
    refused = sandbox.post(f"{EXPORT}/{ids[2]}/enqueue.json")

    assert (code(queued), code(refused)) == (None, "1029")


def test_daily_export_bytes_spent_is_1029_until_reset(marketo: Callable[..., Marketo]) -> None:
    sandbox = marketo(export_daily_bytes=10)
    first, second = (sandbox.export()["result"][0]["exportId"] for _ in range(2))
    sandbox.post(f"{EXPORT}/{first}/enqueue.json")
    sandbox.wait_export(first)

    refused = sandbox.post(f"{EXPORT}/{second}/enqueue.json")
    sandbox.control("quota/reset")

    assert code(refused) == "1029"
    assert sandbox.post(f"{EXPORT}/{second}/enqueue.json")["success"] is True


def test_export_failure_fault_ends_jobs_failed(marketo: Callable[..., Marketo]) -> None:
    sandbox = marketo(export_fail_rate=1.0)
    export_id = sandbox.export()["result"][0]["exportId"]

    sandbox.post(f"{EXPORT}/{export_id}/enqueue.json")
    failed = sandbox.wait_export(export_id, "Failed")
    listed = sandbox.get(f"{EXPORT}.json", status="Failed")["result"]

    assert "fileChecksum" not in failed
    assert [job["exportId"] for job in listed] == [export_id]


def test_cancelled_export_never_completes(marketo: Callable[..., Marketo]) -> None:
    sandbox = marketo(export_processing_s=30)
    export_id = sandbox.export()["result"][0]["exportId"]
    sandbox.post(f"{EXPORT}/{export_id}/enqueue.json")

    cancelled = sandbox.post(f"{EXPORT}/{export_id}/cancel.json")["result"][0]

    assert cancelled["status"] == "Cancelled"
    assert sandbox.call("GET", f"{EXPORT}/{export_id}/file.json").status_code == 404


# -- custom activities ------------------------------------------------------------------


def test_custom_activity_type_is_draft_until_approved(marketo: Callable[..., Marketo]) -> None:
    sandbox = marketo()

    created = sandbox.post("/rest/v1/activities/external/type.json", SALES_EMAIL)["result"][0]
    sandbox.post(
        "/rest/v1/activities/external/type/sendSalesEmail/attributes/create.json",
        {"attribute": [{"apiName": "source", "name": "Source", "dataType": "string"}]},
    )
    sandbox.post("/rest/v1/activities/external/type/sendSalesEmail/approve.json")
    listed = sandbox.get("/rest/v1/activities/external/types.json")["result"]

    types = sandbox.get("/rest/v1/activities/types.json")["result"]

    assert created["status"] == "draft" and created["id"] > 100_000
    assert [(t["apiName"], t["status"], len(t["attributes"])) for t in listed] == [
        ("sendSalesEmail", "approved", 1)
    ]
    assert {12, 13, 37, created["id"]} <= {t["id"] for t in types}


def test_duplicate_or_eleventh_activity_type_is_1003(marketo: Callable[..., Marketo]) -> None:
    sandbox = marketo(max_activity_types=1)
    sandbox.post("/rest/v1/activities/external/type.json", SALES_EMAIL)

    duplicate = sandbox.post("/rest/v1/activities/external/type.json", SALES_EMAIL)
    another = sandbox.post(
        "/rest/v1/activities/external/type.json", {**SALES_EMAIL, "apiName": "openSalesEmail"}
    )

    assert code(duplicate) == code(another) == "1003"
    assert duplicate["errors"][0]["message"] == "Activity type already exists"


def test_more_than_20_attributes_is_1003(marketo: Callable[..., Marketo]) -> None:
    sandbox = marketo()
    sandbox.post("/rest/v1/activities/external/type.json", SALES_EMAIL)
    attributes = [{"apiName": f"a{i}", "name": f"A{i}", "dataType": "string"} for i in range(21)]

    answer = sandbox.post(
        "/rest/v1/activities/external/type/sendSalesEmail/attributes/create.json",
        {"attribute": attributes},
    )

    assert code(answer) == "1003"


def test_custom_activities_are_written_and_read_back(marketo: Callable[..., Marketo]) -> None:
    sandbox = marketo()
    type_id = sandbox.approved_type("source")
    token = sandbox.changes_token()

    added = sandbox.post(
        "/rest/v1/activities/external.json", {"input": [activity(type_id, 1), activity(type_id, 2)]}
    )["result"]
    read = sandbox.get(
        "/rest/v1/activities.json", activityTypeIds=type_id, nextPageToken=token, leadIds="2"
    )["result"]

    assert [a["status"] for a in added] == ["added", "added"]
    assert [(a["id"], a["leadId"], a["primaryAttributeValue"]) for a in read] == [
        (added[1]["id"], 2, "Hi (SIA-1)")
    ]
    assert read[0]["attributes"] == [{"apiName": "source", "name": "source", "value": "Sales App"}]


def test_custom_activities_are_not_deduplicated(marketo: Callable[..., Marketo]) -> None:
    sandbox = marketo()
    type_id = sandbox.approved_type("source")
    batch = {"input": [activity(type_id, 1)]}

    first = sandbox.post("/rest/v1/activities/external.json", batch)["result"][0]
    retried = sandbox.post("/rest/v1/activities/external.json", batch)["result"][0]

    assert first["status"] == retried["status"] == "added"
    assert first["marketoGUID"] != retried["marketoGUID"]
    assert sandbox.state.counts()["custom_activities"] == 2


def test_activity_for_an_unknown_lead_is_skipped_1004(marketo: Callable[..., Marketo]) -> None:
    sandbox = marketo()
    type_id = sandbox.approved_type("source")

    result = sandbox.post(
        "/rest/v1/activities/external.json",
        {"input": [activity(type_id, 1), activity(type_id, 999)]},
    )["result"]

    assert [r["status"] for r in result] == ["added", "skipped"]
    assert result[1]["errors"] == [{"code": "1004", "message": "Lead not found"}]


def test_activity_of_an_unapproved_type_is_skipped_1003(marketo: Callable[..., Marketo]) -> None:
    sandbox = marketo()
    draft = sandbox.post(
        "/rest/v1/activities/external.json",
        {
            "input": [
                activity(
                    sandbox.post("/rest/v1/activities/external/type.json", SALES_EMAIL)["result"][
                        0
                    ]["id"],
                    1,
                )
            ]
        },
    )

    unknown = sandbox.post("/rest/v1/activities/external.json", {"input": [activity(42, 1)]})

    assert draft["result"][0]["errors"][0]["code"] == "1003"
    assert unknown["result"][0]["errors"][0]["code"] == "1003"


# -- faults, journal and controls -------------------------------------------------------


def test_seeded_faults_are_reproducible(marketo: Callable[..., Marketo]) -> None:
    plan = FaultPlan(seed=3, error_rate=0.5)

    runs = [
        [code(sandbox.get("/rest/v1/leads/describe.json")) for _ in range(30)]
        for sandbox in (marketo(faults=plan), marketo(faults=plan))
    ]

    assert runs[0] == runs[1]
    assert None in runs[0] and set(runs[0]) - {None} <= {"604", "608", "611", "713"}
    assert len(set(runs[0])) > 2


def test_journal_records_the_vendor_code_of_each_answer(marketo: Callable[..., Marketo]) -> None:
    sandbox = marketo()
    sandbox.get("/rest/v1/leads.json", filterType="id", filterValues="1", fields="nope")

    journal = sandbox.http.get("/_sandbox/journal").json()

    assert [(e["path"], e["status"], e["code"]) for e in journal] == [
        ("/identity/oauth/token", 200, None),
        ("/rest/v1/leads.json", 200, "1006"),
    ]


def test_control_routes_seed_reproducible_people_and_count_them(
    marketo: Callable[..., Marketo],
) -> None:
    sandbox = marketo(seed_people=0)

    seeded = sandbox.control("seed", {"count": 5, "seed": 11})
    counts = sandbox.http.get("/_sandbox/marketo/counts").json()
    lead = sandbox.http.get("/_sandbox/marketo/leads/5").json()

    assert (seeded["first_id"], seeded["last_id"], counts["leads"]) == (1, 5, 5)
    assert lead["email"] == list(generate(5, seed=11))[-1]["email"]


def test_every_setting_is_configurable_from_flat_options() -> None:
    config = MarketoConfig.from_options(
        client_id="c",
        seed_people=9,
        error_rate=0.1,
        latency_ms=5.0,
        token_expiry_s=None,
        fault_seed=4,
    )

    assert (config.client_id, config.seed_people, config.token_expiry_s) == ("c", 9, None)
    assert config.faults == FaultPlan(seed=4, error_rate=0.1, latency_ms=5.0)
    with pytest.raises(ValueError, match="unknown"):
        MarketoConfig.from_options(colour="blue")


def test_a_marked_activity_refuses_its_whole_call_with_1003(
    marketo: Callable[..., Marketo],
) -> None:
    sandbox = marketo()
    type_id = sandbox.approved_type("source")

    refused = sandbox.post(
        "/rest/v1/activities/external.json",
        {
            "input": [
                activity(type_id, 1),
                activity(type_id, 2, subject="Hi [[refuse-call]] (SIA-2)"),
            ]
        },
    )

    assert code(refused) == "1003" and "input[1]" in refused["errors"][0]["message"]
    assert sandbox.state.counts()["custom_activities"] == 0
