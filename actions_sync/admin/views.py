"""The admin page's HTML, rendered on the server (`page.py` serves it): every value
escaped, no inline script or style (the page's Content-Security-Policy forbids them)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Any, get_args

from confluent_kafka import KafkaException

from actions_sync.admin import status as st
from actions_sync.admin.model import AdminSettings
from actions_sync.settings import Settings
from actions_sync.store import Store
from actions_sync.store.admin_settings import AuditEntry

__all__ = ["DLQ_PAGE", "Status", "dead_letters", "gather_status", "login", "main", "replayed"]

DLQ_PAGE = 200  # dead letters shown on one page
REASONS = (
    "error.class",
    "error.message",
    "error.stage",
    "source.topic",
    "source.partition",
    "source.offset",
)


@dataclass(frozen=True)
class Status:
    people: int
    checkpoints: list[st.Checkpoint]
    quota: dict[str, int]
    groups: list[st.GroupLag] | str  # a string: why the broker could not say
    dlq: dict[str, int | None] | str


def gather_status(settings: Settings, store: Store, now: datetime, topics: list[str]) -> Status:
    unknown = "no broker configured (KAFKA_BOOTSTRAP_SERVERS)"
    groups: list[st.GroupLag] | str = unknown
    dlq: dict[str, int | None] | str = unknown
    if settings.kafka_bootstrap_servers:
        try:
            groups = st.consumer_groups(settings.kafka_bootstrap_servers, settings.group_prefix)
        except (KafkaException, FutureTimeout) as exc:
            groups = f"the broker did not say: {exc}"
        try:
            dlq = st.dlq_sizes(settings.kafka_bootstrap_servers, topics)
        except (KafkaException, FutureTimeout) as exc:
            dlq = f"the broker did not say: {exc}"
    return Status(
        st.people_count(store),
        st.checkpoints_of(store.engine, now),
        st.quota_today(store.engine, now),
        groups,
        dlq,
    )


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title>"
        '<link rel="stylesheet" href="/ui/static/admin.css">'
        '<script src="/ui/static/admin.js" defer></script></head>'
        f"<body><header><h1>actions-sync admin</h1></header><main>{body}</main></body>"
        "</html>"
    )


def _csrf(token: str) -> str:
    return f'<input type="hidden" name="csrf" value="{_e(token)}">'


def login(error: str = "") -> str:
    shown = f'<p class="error" id="login-error">{_e(error)}</p>' if error else ""
    return _page(
        "actions-sync admin: log in",
        f"""
<form method="post" action="/ui/login" class="login" id="login" autocomplete="off">
<h2>Log in</h2>{shown}
<label>Admin token <input type="password" name="token" id="token" required></label>
<label>Your name (for the audit) <input type="text" name="user" id="user" maxlength="200">
</label><button type="submit" id="login-button">Log in</button></form>""",
    )


def _objects() -> tuple[str, ...]:
    annotation = AdminSettings.model_fields["unsubscribe_objects"].annotation
    return tuple(get_args(get_args(annotation)[0]))


def _control(key: str, value: Any) -> str:
    annotation = AdminSettings.model_fields[key].annotation
    if annotation is bool:
        checked = " checked" if value else ""
        return (
            f'<input type="hidden" name="{key}" value="false">'
            f'<input type="checkbox" name="{key}" id="{key}" value="true"{checked}>'
        )
    if getattr(annotation, "__origin__", None) is tuple:
        boxes = "".join(
            f'<label class="inline"><input type="checkbox" name="{key}" value="{_e(o)}"'
            f' id="{key}-{_e(o)}"{" checked" if o in value else ""}> {_e(o)}</label>'
            for o in _objects()
        )
        return f'<input type="hidden" name="{key}.present" value="1">{boxes}'
    extra = ""
    if key == "salesforce_subject_template":
        extra = f'<div class="preview">preview: <output id="preview" for="{key}"></output></div>'
    return f'<input type="text" name="{key}" id="{key}" value="{_e(value)}" size="60">{extra}'


def _settings(
    csrf: str, values: Mapping[str, Any], revision: int, errors: Mapping[str, str]
) -> str:
    rows = []
    for key, info in AdminSettings.model_fields.items():
        error = (
            f'<div class="error" id="error-{key}">{_e(errors[key])}</div>' if key in errors else ""
        )
        rows.append(
            f'<tr><th><label for="{key}">{key}</label><div class="hint">'
            f"{_e(info.description or '')}</div></th>"
            f"<td>{_control(key, values[key])}{error}</td></tr>"
        )
    general = f'<p class="error" id="error-form">{_e(errors[""])}</p>' if "" in errors else ""
    return (
        f'<section id="settings"><h2>Settings <small>revision {revision}</small></h2>'
        f'{general}<form method="post" action="/ui/settings" id="settings-form">'
        f"{_csrf(csrf)}<table>{''.join(rows)}</table>"
        '<button type="submit" id="save">Save</button></form></section>'
    )


def _audit(entries: Sequence[AuditEntry]) -> str:
    rows = "".join(
        f"<tr><td>{e.changed_at:%Y-%m-%d %H:%M:%S}Z</td><td>{_e(e.changed_by)}</td>"
        f"<td>{_e(e.key)}</td><td>{_e(json.dumps(e.old_value))} &rarr; "
        f"{_e(json.dumps(e.new_value))}</td></tr>"
        for e in entries
    )
    return (
        '<section id="audit"><h2>Audit trail</h2><table><tr><th>when</th><th>who</th>'
        f"<th>setting</th><th>old &rarr; new</th></tr>{rows}</table></section>"
    )


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _groups(groups: list[st.GroupLag] | str) -> str:
    if isinstance(groups, str):
        return f'<p class="error">{_e(groups)}</p>'
    if not groups:
        return "<p>no consumer group of this deployment yet</p>"
    out = []
    for g in groups:
        members = "".join(f"<li>{_e(m)}</li>" for m in g.members) or (
            "<li>none reported by the broker (the embedded Tansu broker's DescribeGroups"
            " lists no members; Apache Kafka does)</li>"
        )
        parts = "".join(
            f"<tr><td>{_e(p.topic)}</td><td>{p.partition}</td>"
            f"<td>{'-' if p.committed is None else p.committed}</td>"
            f"<td>{p.end}</td><td>{p.lag}</td></tr>"
            for p in g.partitions
        )
        total = sum(p.lag for p in g.partitions)
        out.append(
            f'<details class="group"><summary>{_e(g.group)} ({_e(g.state)},'
            f" {len(g.members) or 'no'} members reported, lag {total})</summary>"
            f"<ul>{members}</ul>"
            "<table><tr><th>topic</th><th>partition</th><th>committed</th>"
            f"<th>end</th><th>lag</th></tr>{parts}</table></details>"
        )
    return "".join(out)


def _dlq(sizes: dict[str, int | None] | str) -> str:
    if isinstance(sizes, str):
        return f'<p class="error">{_e(sizes)}</p>'
    rows = "".join(
        f'<tr><td><a href="/ui/dlq/{_e(t)}">{_e(t)}.dlq</a></td>'
        f"<td>{'no topic yet' if n is None else n}</td></tr>"
        for t, n in sizes.items()
    )
    return (
        f'<table id="dlq-sizes"><tr><th>dead-letter topic</th><th>records</th></tr>{rows}</table>'
    )


def _charts(sampler: st.Sampler | None) -> str:
    if sampler is None or sampler.targets_file is None:
        return "<p>no charts: ACTIONS_SYNC_ADMIN_METRICS_FILE is not set</p>"
    if not sampler.series:
        return "<p>no sample yet (one every 15 s)</p>"
    return "".join(
        f'<figure class="flow"><figcaption>{_e(flow)}</figcaption>'
        f"{st.chart_svg(list(points))}</figure>"
        for flow, points in sorted(sampler.series.items())
    )


def _status(status: Status, sampler: st.Sampler | None) -> str:
    checkpoints = "".join(
        f"<tr><td>{_e(c.name)}</td><td>{c.updated_at:%Y-%m-%d %H:%M:%S}Z</td>"
        f"<td>{_age(c.age_s)}</td></tr>"
        for c in status.checkpoints
    )
    q = status.quota
    calls = ""
    if sampler is not None and sampler.api_calls:
        calls = "; calls counted by the running workers since they started: " + ", ".join(
            f"{_e(api)} {n:.0f}" for api, n in sorted(sampler.api_calls.items())
        )
    if sampler is not None and sampler.salesforce_usage is not None:
        used, limit = sampler.salesforce_usage
        calls += (
            f'; <span id="salesforce-usage">Salesforce API calls of the org over the last '
            f"24 h: {used:.0f} of {limit:.0f}</span> (Sforce-Limit-Info)"
        )
    return f"""<section id="status"><h2>Sync status</h2>
<p>People in the store: <strong id="people">{status.people}</strong></p>
<h3>Quota used today (UTC), as the store knows it</h3>
<p id="quota">Marketo: {q["marketo_activities"]} activities accepted in {q["marketo_calls"]}
calls (the delivery ledger); Salesforce: {q["salesforce_optout_writes"]} opt-out fields
written{calls}</p>
<h3>Rate and lag per flow, last hour</h3><div id="charts">{_charts(sampler)}</div>
<h3>Worker groups</h3>{_groups(status.groups)}
<h3>Source checkpoints</h3><table id="checkpoints"><tr><th>source</th><th>saved</th>
<th>age</th></tr>{checkpoints}</table>
<h3>Dead letters</h3>{_dlq(status.dlq)}</section>"""


def main(
    csrf: str,
    who: str,
    values: Mapping[str, Any],
    revision: int,
    audit: Sequence[AuditEntry],
    status: Status,
    sampler: st.Sampler | None,
    errors: Mapping[str, str],
    note: str = "",
) -> str:
    shown = f'<p class="note" id="note">{_e(note)}</p>' if note else ""
    logout = (
        f'<form method="post" action="/ui/logout" class="logout">{_csrf(csrf)}'
        f'<span>{_e(who)}</span> <button type="submit" id="logout">Log out</button></form>'
    )
    return _page(
        "actions-sync admin",
        f"{logout}{shown}{_settings(csrf, values, revision, errors)}"
        f"{_audit(audit)}{_status(status, sampler)}",
    )


def _letters(letters: Sequence[Mapping[str, Any]], boxes: bool) -> str:
    rows = []
    for letter in letters:
        position = f"{letter['partition']}:{letter['offset']}"
        box = (
            f'<td><input type="checkbox" name="position" value="{position}"></td>' if boxes else ""
        )
        button = (
            f'<td><button type="submit" name="one" value="{position}">Replay</button></td>'
            if boxes
            else ""
        )
        reasons = "".join(f"<td>{_e(letter.get(h, ''))}</td>" for h in REASONS)
        rows.append(
            f'<tr class="letter" data-position="{position}">{box}<td>{position}</td>'
            f"<td>{_e(letter['key'])}</td><td>{_e(letter['dead_lettered_at'])}</td>"
            f"{reasons}{button}</tr>"
        )
    head = "".join(f"<th>{h}</th>" for h in REASONS) + ("<th></th>" if boxes else "")
    first = "<th></th>" if boxes else ""
    return (
        f'<table id="letters"><tr>{first}<th>partition:offset</th><th>key</th>'
        f"<th>dead-lettered</th>{head}</tr>{''.join(rows)}</table>"
    )


def dead_letters(csrf: str, topic: str, letters: Sequence[Mapping[str, Any]]) -> str:
    if not letters:
        body = f'<p id="empty">{_e(topic)}.dlq holds no dead letters.</p>'
    else:
        body = (
            f'<form method="post" action="/ui/dlq/{_e(topic)}/replay" id="replay-form">'
            f"{_csrf(csrf)}{_letters(letters, True)}"
            '<label><input type="checkbox" name="dry_run" value="true" id="dry-run"'
            " checked> dry run (only show what would be replayed)</label> "
            '<button type="submit" name="which" value="selected" id="replay-selected">'
            'Replay selected</button> <button type="submit" name="which" value="all"'
            ' id="replay-all">Replay all</button></form>'
        )
    more = f"<p>the first {DLQ_PAGE} are shown</p>" if len(letters) >= DLQ_PAGE else ""
    return _page(
        f"{topic}.dlq",
        f'<p><a href="/ui/">&larr; back</a></p><h2>Dead letters of {_e(topic)}</h2>{more}{body}',
    )


def replayed(
    topic: str, letters: Sequence[Mapping[str, Any]], dry_run: bool, error: str = ""
) -> str:
    if error:
        head = f'<p class="error" id="replay-error">{_e(error)}</p>'
    else:
        verb = "would be replayed (dry run)" if dry_run else "replayed"
        head = f'<p id="replay-result">{len(letters)} dead letters {verb}.</p>'
    return _page(
        f"{topic}.dlq replay",
        f'<p><a href="/ui/dlq/{_e(topic)}">&larr; dead letters'
        f" of {_e(topic)}</a></p>{head}{_letters(letters, False)}",
    )
