"""The eight custom activity types of SPEC S7, as Marketo must know them.

Marketo's API cannot write its native sales activity types, so the sink registers these
as custom types (create, add attributes, approve) and the activity router fills them.
One row per `SalesActivityType` symbol, with the attributes of API_NOTES.md's glossary.

The primary attribute is declared apart from the other attributes, as Marketo's
type-creation call takes it: an attribute may not repeat the primary's apiName (1003),
so `attributes` never contains it; its value travels as `primaryAttributeValue`.

The names are a contract with every Marketo instance already set up: once a type is
registered, renaming an `api_name` creates a second type (at most 10 per instance), so
rows are only ever added, never renamed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "ACTIVITY_TYPES",
    "BY_SYMBOL",
    "SOURCE",
    "ActivityType",
    "Attribute",
    "DataType",
]

DataType = Literal["string", "integer", "link", "email", "phone"]

SOURCE = "Sales App"  # the value of every type's Source attribute (glossary)


@dataclass(frozen=True)
class Attribute:
    api_name: str
    name: str
    data_type: DataType = "string"


@dataclass(frozen=True)
class ActivityType:
    symbol: str  # SalesActivityType symbol (schemas/SalesActivity.avsc)
    api_name: str
    name: str
    trigger_name: str
    filter_name: str
    primary_attribute: Attribute
    attributes: tuple[Attribute, ...]

    def attribute_names(self) -> frozenset[str]:
        """apiNames of the non-primary attributes."""
        return frozenset(a.api_name for a in self.attributes)


# -- the glossary's attributes, each defined once ----------------------------------------------

SENT_BY = Attribute("sentBy", "Sent By", "email")
SOURCE_ATTR = Attribute("source", "Source")
TEMPLATE_ID = Attribute("templateId", "Template ID")
TEMPLATE_URL = Attribute("salesTemplateUrl", "Sales Template URL", "link")
CAMPAIGN_URL = Attribute("salesCampaignUrl", "Sales Campaign URL", "link")
TEMPLATE_NAME = Attribute("salesTemplateName", "Sales Template Name")
EMAIL_SUBJECT = Attribute("emailSubject", "Email Subject")
CAMPAIGN_NAME = Attribute("salesCampaignName", "Sales Campaign Name")
CAMPAIGN_ID = Attribute("salesCampaignId", "Sales Campaign ID")
SALES_PERSON_ID = Attribute("marketoSalesPersonId", "Marketo Sales Person ID")
LINK = Attribute("link", "Link", "link")
RECEIVED_BY = Attribute("receivedBy", "Received By", "email")
DETAILS = Attribute("details", "Details")
EMAIL = Attribute("email", "Email", "email")
CALL_MADE_BY = Attribute("salesCallMadeBy", "Sales Call Made By", "email")
CALL_STATUS = Attribute("salesCallStatus", "Sales Call Status")  # completed, no answer, ...
CALL_SUBJECT = Attribute("salesCallSubject", "Sales Call Subject")
PHONE_CALLED = Attribute("salesPhoneNumberCalled", "Sales Phone Number Called", "phone")
CALL_DURATION = Attribute("salesCallDuration", "Sales Call Duration (s)", "integer")
CALL_RECORDING_URL = Attribute("salesCallRecordingUrl", "Sales Call Recording URL", "link")
CALL_ANSWERED_BY = Attribute("salesCallAnsweredBy", "Sales Call Answered By")

# Send / Open Sales Email: the glossary's nine, minus Email Subject (the primary).
_EMAIL = (
    SENT_BY,
    SOURCE_ATTR,
    TEMPLATE_ID,
    TEMPLATE_URL,
    CAMPAIGN_URL,
    TEMPLATE_NAME,
    CAMPAIGN_NAME,
    SALES_PERSON_ID,
)
_CAMPAIGN = (CAMPAIGN_URL, CAMPAIGN_ID, SENT_BY, SOURCE_ATTR, SALES_PERSON_ID)


ACTIVITY_TYPES: tuple[ActivityType, ...] = (
    ActivityType(
        "SEND_SALES_EMAIL",
        "sendSalesEmail",
        "Send Sales Email",
        "Sent Sales Email",
        "Was Sent Sales Email",
        EMAIL_SUBJECT,
        _EMAIL,
    ),
    ActivityType(
        "OPEN_SALES_EMAIL",
        "openSalesEmail",
        "Open Sales Email",
        "Opened Sales Email",
        "Opened Sales Email",
        EMAIL_SUBJECT,
        _EMAIL,
    ),
    ActivityType(
        "CLICK_SALES_EMAIL",
        "clickSalesEmail",
        "Click Sales Email",
        "Clicked Sales Email",
        "Clicked Sales Email",
        EMAIL_SUBJECT,
        (LINK, *_EMAIL),
    ),
    # The glossary gives a reply no subject attribute; the replied-to subject is its
    # primary attribute, so the activity log says what was answered.
    ActivityType(
        "REPLY_TO_SALES_EMAIL",
        "replyToSalesEmail",
        "Reply to Sales Email",
        "Replied to Sales Email",
        "Replied to Sales Email",
        EMAIL_SUBJECT,
        (RECEIVED_BY, SOURCE_ATTR, SALES_PERSON_ID),
    ),
    # Bounced: the glossary lists no Source; Email Subject is its primary, like the others.
    ActivityType(
        "SALES_EMAIL_BOUNCED",
        "salesEmailBounced",
        "Sales Email Bounced",
        "Sales Email Bounced",
        "Had Sales Email Bounced",
        EMAIL_SUBJECT,
        (DETAILS, EMAIL, SENT_BY, TEMPLATE_ID, SALES_PERSON_ID),
    ),
    ActivityType(
        "RECEIVED_SALES_CALL",
        "receivedSalesCall",
        "Received Sales Call",
        "Received Sales Call",
        "Received Sales Call",
        CALL_SUBJECT,
        (
            CALL_MADE_BY,
            CALL_STATUS,
            CAMPAIGN_NAME,
            CAMPAIGN_URL,
            PHONE_CALLED,
            SOURCE_ATTR,
            CALL_DURATION,
            CALL_RECORDING_URL,
            CALL_ANSWERED_BY,
            SALES_PERSON_ID,
        ),
    ),
    ActivityType(
        "ADD_TO_SALES_CAMPAIGN",
        "addToSalesCampaign",
        "Add to Sales Campaign",
        "Added to Sales Campaign",
        "Was Added to Sales Campaign",
        CAMPAIGN_NAME,
        _CAMPAIGN,
    ),
    ActivityType(
        "REMOVED_FROM_SALES_CAMPAIGN",
        "removedFromSalesCampaign",
        "Removed from Sales Campaign",
        "Removed from Sales Campaign",
        "Was Removed from Sales Campaign",
        CAMPAIGN_NAME,
        _CAMPAIGN,
    ),
)

BY_SYMBOL: dict[str, ActivityType] = {t.symbol: t for t in ACTIVITY_TYPES}
