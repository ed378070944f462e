"""Realistic sample ``data`` for each of the platform's events (``webhooks test``, the demo)."""

from __future__ import annotations

from typing import Any

from webhook_core.errors import UnknownEvent

_MESSAGE = {
    "message_id": "msg_8GQ2Z7",
    "channel": "whatsapp",
    "to": "+919876543210",
    "campaign_id": "cmp_diwali_2024",
    "template": "order_update",
    "metadata": {"recipient_name": "राजेश कुमार"},
}
_GRIEVANCE = {
    "grievance_id": "grv_1042",
    "category": "water_supply",
    "priority": "high",
    "subject": "No water supply in ward 12 since Monday",
    "reporter": "+919812345678",
}
_PAYMENT = {
    "payment_id": "pay_5XK81Q",
    "amount": 49_900,
    "currency": "INR",
    "method": "upi",
    "order_id": "ord_20240101_77",
}
_CAMPAIGN = {
    "campaign_id": "cmp_diwali_2024",
    "name": "Diwali offers",
    "channel": "sms",
}

SAMPLES: dict[str, dict[str, Any]] = {
    "message.sent": {**_MESSAGE, "status": "sent"},
    "message.delivered": {**_MESSAGE, "status": "delivered"},
    "message.failed": {
        **_MESSAGE,
        "status": "failed",
        "error_code": "131026",
        "error_message": "Recipient phone number is not a WhatsApp user",
    },
    "message.read": {**_MESSAGE, "status": "read"},
    "grievance.created": {**_GRIEVANCE, "status": "open"},
    "grievance.updated": {
        **_GRIEVANCE,
        "status": "in_progress",
        "previous_status": "open",
        "assigned_to": "officer_ward12",
    },
    "grievance.resolved": {
        **_GRIEVANCE,
        "status": "resolved",
        "previous_status": "in_progress",
        "assigned_to": "officer_ward12",
        "resolution": "Pipeline repaired; supply restored on Wednesday",
    },
    "payment.processed": {**_PAYMENT, "status": "processed"},
    "payment.failed": {**_PAYMENT, "status": "failed", "failure_reason": "insufficient_funds"},
    "payment.refunded": {
        **_PAYMENT,
        "status": "refunded",
        "refund_id": "rfnd_3JD9",
        "refunded_amount": 49_900,
    },
    "campaign.started": {**_CAMPAIGN, "status": "running", "audience_size": 120_000},
    "campaign.completed": {
        **_CAMPAIGN,
        "status": "completed",
        "sent_count": 120_000,
        "delivered_count": 117_342,
        "failed_count": 2_658,
    },
    "campaign.failed": {
        **_CAMPAIGN,
        "status": "failed",
        "error_message": "Sender id not approved by the operator",
    },
}


def sample_data(event: str) -> dict[str, Any]:
    """A new copy of the sample ``data`` for a platform event; ``UnknownEvent`` otherwise."""
    try:
        return {**SAMPLES[event]}
    except KeyError:
        raise UnknownEvent(
            f"there is no sample for {event!r}; pass the data yourself "
            f"(platform events: {', '.join(SAMPLES)})"
        ) from None
