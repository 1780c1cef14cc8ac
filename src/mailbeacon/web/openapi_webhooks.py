"""The webhook parts of the OpenAPI document: the endpoints' resources, and the events they are
sent (OpenAPI 3.1's top-level ``webhooks``), whose schemas are made from their typed definitions
in ``notify.events``, so that the document cannot drift from what is sent."""

from __future__ import annotations

import types
from typing import (
    Any,
    Literal,
    NotRequired,
    Union,
    get_args,
    get_origin,
    get_type_hints,
    is_typeddict,
)

from mailbeacon.notify.events import DATA_TYPES, EVENT_TYPES
from mailbeacon.notify.webhooks import OVERLAP, SECOND

_JSON_TYPES: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _doc(definition: type) -> str:
    """A docstring as one line of Markdown."""
    return " ".join((definition.__doc__ or "").split()).replace("``", "`")


def json_schema(hint: Any, components: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema of a type hint; a TypedDict becomes a component of its own (added to
    ``components``), described by its docstring."""
    if is_typeddict(hint):
        name = hint.__name__
        if name not in components:
            fields = get_type_hints(hint, include_extras=True)  # keeps NotRequired
            components[name] = {
                "type": "object",
                "description": _doc(hint),
                "required": [k for k, v in fields.items() if get_origin(v) is not NotRequired],
                "properties": {k: json_schema(v, components) for k, v in fields.items()},
            }
        return _ref(name)
    origin, args = get_origin(hint), get_args(hint)
    if origin is NotRequired:
        return json_schema(args[0], components)
    if origin is Literal:
        return {"enum": list(args)}
    if origin in (Union, types.UnionType):
        options = [json_schema(a, components) for a in args]
        if all(set(o) == {"type"} for o in options):
            return {"type": [o["type"] for o in options]}
        return {"anyOf": options}
    if hint in _JSON_TYPES:
        return {"type": _JSON_TYPES[hint]}
    raise TypeError(f"no JSON Schema for {hint!r}")


def event_schema(event_type: str) -> str:
    """The component name of an event's payload: ``email.opened`` → ``EmailOpenedEvent``."""
    return "".join(part.title() for part in event_type.split(".")) + "Event"


def _event_schemas() -> dict[str, Any]:
    components: dict[str, Any] = {}
    for event_type in EVENT_TYPES:
        data = json_schema(DATA_TYPES[event_type], components)
        components[event_schema(event_type)] = {
            "type": "object",
            "description": f"The body POSTed for `{event_type}`.",
            "required": ["type", "timestamp", "data"],
            "properties": {
                "type": {"const": event_type},
                "timestamp": {"type": "string", "format": "date-time"},
                "data": data,
            },
        }
    return components


_EVENTS = {"type": "array", "minItems": 1, "items": {"enum": list(EVENT_TYPES)}}
_TIME = {"type": "string", "format": "date-time"}
_SECRET = {
    "type": "string",
    "description": "Shown once: `whsec_` and 32 random bytes in base64, as Standard Webhooks' "
    "libraries take it.",
}

SCHEMAS: dict[str, Any] = {
    "NewWebhook": {
        "type": "object",
        "required": ["url", "events"],
        "properties": {
            "url": {"type": "string", "format": "uri", "maxLength": 2000},
            "events": _EVENTS,
        },
    },
    "WebhookChange": {
        "type": "object",
        "minProperties": 1,
        "properties": {
            "url": {"type": "string", "format": "uri", "maxLength": 2000},
            "events": _EVENTS,
            "enabled": {
                "type": "boolean",
                "description": "true: the deliveries it kept pending are due at once.",
            },
        },
    },
    "Webhook": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "url": {"type": "string"},
            "events": _EVENTS,
            "enabled": {"type": "boolean"},
            "disabled_reason": {"type": ["string", "null"]},
            "failing_since": {
                **_TIME,
                "type": ["string", "null"],
                "description": "The first failure since the last success; after 5 days the "
                "endpoint is disabled.",
            },
            "created_at": _TIME,
        },
    },
    "NewWebhookSecret": {
        "type": "object",
        "description": f"The previous secret keeps signing for {OVERLAP // SECOND // 3600} "
        "hours beside this one.",
        "properties": {"id": {"type": "string"}, "secret": _SECRET},
    },
    "CreatedWebhook": {
        "allOf": [_ref("Webhook"), {"type": "object", "properties": {"secret": _SECRET}}]
    },
    "DeliveryAttempt": {
        "type": "object",
        "description": "One attempt to deliver an event to the endpoint.",
        "properties": {
            "id": {"type": "integer"},
            "delivery_id": {"type": "integer"},
            "event_type": {"enum": list(EVENT_TYPES)},
            "webhook_id": {
                "type": "string",
                "description": "The `webhook-id` header: the event's id, the same on every "
                "attempt.",
            },
            "time": _TIME,
            "status": {"type": ["integer", "null"], "description": "Null: no answer."},
            "error": {"type": ["string", "null"], "description": "Null: delivered."},
            "duration_ms": {"type": "number"},
            "state": {
                "enum": ["pending", "delivered", "failed"],
                "description": "The delivery's state now.",
            },
        },
    },
    **_event_schemas(),
}

_HEADERS = [
    {"name": name, "in": "header", "required": True, "schema": {"type": "string"},
     "description": description}
    for name, description in (
        ("webhook-id", "The event's id (`msg_…`): the same on every attempt."),
        ("webhook-timestamp", "When this attempt was signed, in seconds since the epoch."),
        ("webhook-signature", "`v1,` and the base64 HMAC-SHA256 of `{webhook-id}."
         "{webhook-timestamp}.{body}` under each live secret, separated by spaces."),
    )
]  # fmt: skip

WEBHOOKS: dict[str, Any] = {
    event_type: {
        "post": {
            "summary": event_type,
            "description": _doc(DATA_TYPES[event_type]),
            "parameters": _HEADERS,
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref(event_schema(event_type))}},
            },
            "responses": {
                "2XX": {"description": "Delivered"},
                "410": {"description": "Gone: the endpoint is disabled"},
                "default": {
                    "description": "Failed: tried again later (429 and 503 may say "
                    "when with Retry-After)"
                },
            },
        }
    }
    for event_type in EVENT_TYPES
}
