"""Every topic of actions-sync, by name, with what it carries (DESIGN.md's contract).

Plain constants in the kernel (STYLE.md puts them in `streams/topics.py`; they live here
because the connectors, which must not import `streams`, publish and consume them too).
"""

from __future__ import annotations

from actions_sync.kafka import TopicSpec, dlq_topic

__all__ = [
    "ALL_TOPICS",
    "INPUT_TOPICS",
    "OUTBOUND_MARKETO_ACTIVITIES",
    "OUTBOUND_SALESFORCE_OPTOUTS",
    "OUTBOUND_SALESFORCE_TASKS",
    "PERSON_CHANGES",
    "RECORD_OF",
    "REMINDER_TASKS",
    "SALES_ACTIVITIES",
    "SEND_CHECKS",
    "SEND_DECISIONS",
    "SETTINGS",
    "UNSUBSCRIBES",
    "specs",
]

PERSON_CHANGES = "marketo.person.changes"  # key: Marketo ID, value: PersonChange
SALES_ACTIVITIES = "actions.sales.activities"  # key: Marketo ID, value: SalesActivity
UNSUBSCRIBES = "actions.unsubscribes"  # key: Marketo ID, value: Unsubscribe
REMINDER_TASKS = "actions.reminder.tasks"  # key: task id, value: ReminderTask
SEND_CHECKS = "actions.send.checks"  # key: Marketo ID, value: SendCheck
SEND_DECISIONS = "actions.send.decisions"  # key: Marketo ID, value: SendDecision
SALESFORCE_OPTOUTS = "salesforce.optouts"  # key: Salesforce Id, value: SalesforceOptOut
SALESFORCE_TASKS = "salesforce.tasks"  # key: Task Id, value: SalesforceTask
OUTBOUND_MARKETO_ACTIVITIES = "outbound.marketo.activities"
OUTBOUND_SALESFORCE_TASKS = "outbound.salesforce.tasks"
OUTBOUND_SALESFORCE_OPTOUTS = "outbound.salesforce.optouts"
SETTINGS = "actions.settings"  # compacted

# The producer contract: topic -> Avro record published on it.
RECORD_OF = {
    PERSON_CHANGES: "PersonChange",
    SALES_ACTIVITIES: "SalesActivity",
    UNSUBSCRIBES: "Unsubscribe",
    REMINDER_TASKS: "ReminderTask",
    SEND_CHECKS: "SendCheck",
    SEND_DECISIONS: "SendDecision",
    OUTBOUND_MARKETO_ACTIVITIES: "MarketoActivityOut",
    OUTBOUND_SALESFORCE_TASKS: "SalesforceTaskOut",
    SALESFORCE_OPTOUTS: "SalesforceOptOut",
    OUTBOUND_SALESFORCE_OPTOUTS: "SalesforceOptOutWrite",
    SALESFORCE_TASKS: "SalesforceTask",
}
INPUT_TOPICS = (PERSON_CHANGES, SALES_ACTIVITIES, UNSUBSCRIBES, REMINDER_TASKS, SEND_CHECKS)


def specs(names: tuple[str, ...], partitions: int, replication: int = 1) -> list[TopicSpec]:
    """Topic specs for `names` and their dead-letter topics."""
    return [
        TopicSpec(topic, partitions, replication)
        for name in names
        for topic in (name, dlq_topic(name))
    ]


# Every topic of the project (each may have its `.dlq`): what `actions-sync topics` lists.
ALL_TOPICS = (
    PERSON_CHANGES,
    SALES_ACTIVITIES,
    UNSUBSCRIBES,
    REMINDER_TASKS,
    SEND_CHECKS,
    SEND_DECISIONS,
    SALESFORCE_OPTOUTS,
    SALESFORCE_TASKS,
    OUTBOUND_MARKETO_ACTIVITIES,
    OUTBOUND_SALESFORCE_TASKS,
    OUTBOUND_SALESFORCE_OPTOUTS,
    SETTINGS,
)
