"""The OpenAPI document of ``/api/v1``, served at ``/api/v1/openapi.json``."""

from __future__ import annotations

from typing import Any

from mailbeacon import __version__
from mailbeacon.notify.alerts import MODES
from mailbeacon.notify.stream import STREAM_TYPES
from mailbeacon.privacy import CONSENT
from mailbeacon.privacy import MODES as TRACKING
from mailbeacon.web.openapi_webhooks import SCHEMAS as WEBHOOK_SCHEMAS
from mailbeacon.web.openapi_webhooks import WEBHOOKS


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _path(name: str) -> list[dict[str, Any]]:
    """The parameters of a route with one path parameter."""
    return [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}]


def _body(schema: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref(schema)}}}


def _on_one(
    summary: str,
    param: str,
    missing: str,
    responses: dict[str, Any],
    *,
    body: str | None = None,
    query: tuple[dict[str, Any], ...] = (),
) -> dict[str, Any]:
    """An operation on one thing named in the path: its own responses, or 404."""
    operation = {
        "summary": summary,
        "parameters": [*_path(param), *query],
        "responses": {**responses, **_ERRORS, "404": _json(_ref("Error"), missing)},
    }
    return operation if body is None else {**operation, "requestBody": _body(body)}


def _read(summary: str, param: str, schema: str, found: str, missing: str) -> dict[str, Any]:
    """A GET of one thing named in the path: it, or 404."""
    return {"get": _on_one(summary, param, missing, {"200": _json(_ref(schema), found)})}


_CURSOR = (
    {"name": "after", "in": "query", "schema": {"type": "string"}},
    {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 1000}},
)


def _listing(items: str, item: str) -> dict[str, Any]:
    """A page of a cursor-paginated list: ``{items: [...], next}``."""
    return _json(
        {
            "type": "object",
            "properties": {
                items: {"type": "array", "items": _ref(item)},
                "next": {"type": ["string", "null"]},
            },
        },
        f"A page of {items}; pass `next` as `after` for the following page",
    )


def _page(summary: str, items: str, item: str) -> dict[str, Any]:
    """A cursor-paginated list: ``after`` and ``limit`` in, ``{items: [...], next}`` out."""
    return {
        "get": {
            "summary": summary,
            "parameters": list(_CURSOR),
            "responses": {"200": _listing(items, item), **_ERRORS},
        }
    }


_NO_WEBHOOK = "No such webhook (or not yours)"
_ERRORS = {
    "400": _json(_ref("Error"), "Malformed request"),
    "401": _json(_ref("Error"), "Missing or unknown API key"),
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "mailbeacon",
        "version": __version__,
        "description": "Email open and click tracking that tells the truth about opens.",
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Settings": {
                "type": "object",
                "description": "A PUT sends any of the fields.",
                "properties": {
                    "tracking": {
                        "enum": list(TRACKING),
                        "description": "The most your mail is tracked (see the README's Privacy).",
                    },
                    "consent_required": {
                        "type": "boolean",
                        "description": "Recipients whose consent is unknown are not tracked.",
                    },
                    "retention_days": {
                        "type": "integer",
                        "minimum": 0,
                        "description": "Days your hits are kept; 0: the server's setting.",
                    },
                    "track_default": {
                        "type": "boolean",
                        "description": "Track mail sent through the relay without an "
                        "X-Mailbeacon-Track header.",
                    },
                    "alerts": {
                        "enum": list(MODES),
                        "description": "Alert emails: on a message's first open (first), on "
                        "each (every), an hourly digest, or none (off).",
                    },
                },
            },
            "RecipientPrivacy": {
                "type": "object",
                "properties": {
                    "address": {"type": "string"},
                    "tracking": {"enum": list(TRACKING)},
                    "consent": {
                        "type": "object",
                        "properties": {
                            "state": {"enum": list(CONSENT)},
                            "at": {"type": ["string", "null"], "format": "date-time"},
                            "source": {"type": ["string", "null"]},
                        },
                    },
                },
            },
            "Consent": {
                "type": "object",
                "required": ["state"],
                "properties": {
                    "state": {"enum": list(CONSENT)},
                    "source": {"type": "string", "maxLength": 200},
                },
            },
            "RecipientTracking": {
                "type": "object",
                "required": ["mode"],
                "properties": {"mode": {"enum": list(TRACKING)}},
            },
            "Error": {
                "type": "object",
                "properties": {"error": {"type": "string"}},
                "required": ["error"],
            },
            "NewMessages": {
                "type": "object",
                "required": ["from", "to", "subject", "html"],
                "properties": {
                    "from": {"type": "string", "format": "email"},
                    "to": {
                        "type": "array",
                        "items": {"type": "string", "format": "email"},
                        "minItems": 1,
                        "maxItems": 1000,
                    },
                    "subject": {"type": "string", "maxLength": 998},
                    "html": {"type": "string"},
                    "text": {"type": "string"},
                    "campaign": {"type": "string", "maxLength": 200},
                    "sent_at": {"type": "string", "format": "date-time"},
                    "tracking": {"enum": list(TRACKING)},
                },
            },
            "TrackedMessage": {
                "type": "object",
                "properties": {
                    "id": {"type": ["string", "null"]},
                    "recipient": {"type": "string"},
                    "tracking": {"enum": list(TRACKING)},
                    "pixel_url": {"type": ["string", "null"]},
                    "consent_url": {
                        "type": ["string", "null"],
                        "description": "Where the recipient allows or refuses tracking.",
                    },
                    "links": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "url": {"type": "string"},
                                "tracked_url": {"type": "string"},
                            },
                        },
                    },
                    "html": {"type": "string"},
                },
            },
            "Event": {
                "type": "object",
                "description": "One pixel or link hit.",
                "properties": {
                    "id": {"type": "integer"},
                    "message_id": {"type": "string"},
                    "time": {"type": "string", "format": "date-time"},
                    "kind": {"enum": ["open", "click"]},
                    "method": {"type": "string"},
                    "verdict": {"enum": ["human", "machine", "self", "unknown"]},
                    "agent": {"type": "string"},
                    "confidence": {"type": "number"},
                    "reasons": {
                        "type": "array",
                        "description": "The rules that decided, strongest first; a revision "
                        "comes first, then what the hit was first taken for.",
                        "items": {
                            "type": "object",
                            "properties": {"rule": {"type": "string"}, "why": {"type": "string"}},
                        },
                    },
                    "revised_by": {
                        "type": ["string", "null"],
                        "description": "The rule that settled the verdict after later hits.",
                    },
                    "revised_at": {"type": ["string", "null"], "format": "date-time"},
                    "client": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string"},
                            "type": {
                                "enum": ["desktop", "mobile", "webmail", "proxy", "browser", ""]
                            },
                            "os": {"type": "string"},
                        },
                    },
                    "ip": {"type": "string"},
                    "user_agent": {"type": "string"},
                    "url": {"type": "string", "description": "Clicks only."},
                },
            },
            "Message": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "recipient": {"type": "string"},
                    "from": {"type": "string"},
                    "subject": {"type": "string"},
                    "campaign": {"type": ["string", "null"]},
                    "sent_at": {"type": "string", "format": "date-time"},
                    "opened": {"type": "boolean"},
                    "state": {"enum": ["opened", "inferred", "machine_only", "not_opened"]},
                    "tracking": {"enum": list(TRACKING)},
                    "unsubscribed": {
                        "type": "boolean",
                        "description": "The recipient unsubscribed through this message (and "
                        "the suppression has not been lifted).",
                    },
                    "counts": {
                        "type": "object",
                        "properties": {
                            "opens": {"type": "integer", "description": "Human opens."},
                            "clicks": {"type": "integer", "description": "Human clicks."},
                            "all_opens": {"type": "integer"},
                            "all_clicks": {"type": "integer"},
                            "by_verdict": {
                                "type": "object",
                                "additionalProperties": {"type": "integer"},
                                "description": 'Hits by "kind:verdict".',
                            },
                        },
                    },
                    "links": {"type": "array", "items": {"type": "string"}},
                    "hits": {"type": "array", "items": _ref("Event")},
                    "delivery": {
                        "type": ["object", "null"],
                        "description": "Its copy in the outbound queue (relay, campaigns); null "
                        "when it was registered through the API and never queued.",
                        "properties": {
                            "state": {"enum": ["queued", "sent", "bounced"]},
                            "attempts": {"type": "integer"},
                            "sent_at": {
                                "type": ["string", "null"],
                                "format": "date-time",
                                "description": "When the upstream server accepted it.",
                            },
                            "last_error": {"type": ["string", "null"]},
                        },
                    },
                },
            },
            "Bounce": {
                "type": "object",
                "description": "A copy the upstream server refused for good, or given up on.",
                "properties": {
                    "recipient": {"type": "string"},
                    "message_id": {"type": ["string", "null"], "description": "Null: untracked."},
                    "time": {"type": "string", "format": "date-time"},
                    "error": {"type": "string", "description": "The server's reply."},
                },
            },
            "Suppression": {
                "type": "object",
                "description": "An address campaigns skip.",
                "properties": {
                    "address": {"type": "string", "description": "Lowercased."},
                    "reason": {"enum": ["unsubscribed", "bounced"]},
                    "message_id": {
                        "type": ["string", "null"],
                        "description": "The message it came from.",
                    },
                    "time": {"type": "string", "format": "date-time"},
                },
            },
            "Stats": {
                "type": "object",
                "description": "Rates over delivered messages, each recipient counted once.",
                "properties": {
                    "campaign": {"type": ["string", "null"], "description": "Campaigns only."},
                    "delivered": {"type": "integer"},
                    "naive_open_rate": {
                        "type": "number",
                        "description": "Any pixel fetch, robots included.",
                    },
                    "observed_open_rate": {"type": "number", "description": "A human open."},
                    "inferred_open_rate": {
                        "type": "number",
                        "description": "A human open or a human click.",
                    },
                    "estimated_open_rate": {
                        "type": "number",
                        "description": "Plus the opens nobody can see (see assumptions).",
                    },
                    "estimated_open_rate_interval": {
                        "type": "array",
                        "items": {"type": "number"},
                        "description": "95% interval.",
                    },
                    "click_rate": {"type": "number", "description": "A human click."},
                    "unique_opens": {"type": "integer"},
                    "unique_clicks": {"type": "integer"},
                    "naive_unique_opens": {"type": "integer"},
                    "privacy_protected": {"type": "integer"},
                    "hits": {
                        "type": "object",
                        "properties": {
                            "by_verdict": {"type": "object"},
                            "by_agent": {"type": "object"},
                        },
                    },
                    "clients": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "client": {"type": "string"},
                                "type": {"type": "string"},
                                "os": {"type": "string"},
                                "recipients": {"type": "integer"},
                            },
                        },
                    },
                    "assumptions": {"type": "array", "items": {"type": "string"}},
                },
            },
            **WEBHOOK_SCHEMAS,
        },
    },
    "security": [{"bearer": []}],
    "paths": {
        "/api/v1/messages": {
            "post": {
                "summary": "Register a tracked message: one copy per recipient",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("NewMessages")}},
                },
                "responses": {
                    "201": _json(
                        {
                            "type": "object",
                            "properties": {
                                "messages": {"type": "array", "items": _ref("TrackedMessage")}
                            },
                        },
                        "The tracked copies",
                    ),
                    **_ERRORS,
                    "413": _json(_ref("Error"), "Body too large"),
                    "422": _json(_ref("Error"), "Invalid field"),
                },
            }
        },
        "/api/v1/messages/{message_id}": _read(
            "A message, its open state and its hits",
            "message_id",
            "Message",
            "The message",
            "No such message",
        ),
        "/api/v1/events": _page("All hits, oldest first, cursor-paginated", "events", "Event"),
        "/api/v1/bounces": _page(
            "Copies refused for good, in the order they bounced", "bounces", "Bounce"
        ),
        "/api/v1/suppressions": _page(
            "Addresses campaigns skip (unsubscribed or bounced), by address",
            "suppressions",
            "Suppression",
        ),
        "/api/v1/suppressions/{address}": {
            "delete": {
                "summary": "Lift a suppression: campaigns send to the address again",
                "parameters": _path("address"),
                "responses": {
                    "204": {"description": "Lifted"},
                    **_ERRORS,
                    "404": _json(_ref("Error"), "The address is not suppressed"),
                },
            }
        },
        "/api/v1/campaigns/{name}/stats": _read(
            "A campaign's statistics",
            "name",
            "Stats",
            "The campaign's figures",
            "No messages in this campaign",
        ),
        "/api/v1/recipients/{address}/stats": _read(
            "The statistics of all the messages to one recipient",
            "address",
            "Stats",
            "The recipient's figures",
            "No messages to this recipient",
        ),
        "/api/v1/recipients/{address}": {
            "delete": _on_one(
                "Erase everything kept about a recipient (their suppression stays)",
                "address",
                "Not an address",
                {"200": _json({"type": "object"}, "What was removed, table by table")},
            )
        },
        "/api/v1/recipients/{address}/export": {
            "get": _on_one(
                "Everything kept about a recipient",
                "address",
                "Not an address",
                {"200": _json({"type": "object"}, "The recipient's data, table by table")},
            )
        },
        "/api/v1/recipients/{address}/consent": {
            "get": _on_one(
                "A recipient's consent and tracking mode",
                "address",
                "Not an address",
                {"200": _json(_ref("RecipientPrivacy"), "Their consent")},
            ),
            "put": _on_one(
                "Record a recipient's consent to tracking",
                "address",
                "Not an address",
                {"200": _json(_ref("RecipientPrivacy"), "Their consent, recorded")},
                body="Consent",
            ),
        },
        "/api/v1/recipients/{address}/tracking": {
            "put": _on_one(
                "The most a recipient is tracked",
                "address",
                "Not an address",
                {"200": _json(_ref("RecipientPrivacy"), "Their mode, set")},
                body="RecipientTracking",
            )
        },
        "/api/v1/settings": {
            "get": {
                "summary": "Your settings",
                "responses": {"200": _json(_ref("Settings"), "Your settings"), **_ERRORS},
            },
            "put": {
                "summary": "Change your settings",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("Settings")}},
                },
                "responses": {
                    "200": _json(_ref("Settings"), "Your settings, changed"),
                    **_ERRORS,
                    "422": _json(_ref("Error"), "Invalid field"),
                },
            },
        },
        "/api/v1/messages/{message_id}/mute": {
            method: _on_one(
                summary,
                "message_id",
                "No such message (or not yours)",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "id": {"type": "string"},
                                "alerts_muted": {"type": "boolean"},
                            },
                        },
                        "Whether the message's alerts are muted now",
                    )
                },
            )
            for method, summary in (
                ("post", "Mute the message's alert emails"),
                ("delete", "Unmute the message's alert emails"),
            )
        },
        "/api/v1/stream": {
            "get": {
                "summary": "Your events live, as server-sent events (id, event: the type, data: "
                "the event); resumes after Last-Event-ID",
                "parameters": [
                    {"name": "Last-Event-ID", "in": "header", "schema": {"type": "integer"}},
                    {"name": "after", "in": "query", "schema": {"type": "integer"}},
                    {
                        "name": "types",
                        "in": "query",
                        "description": "Comma-separated event types; default: "
                        + ", ".join(STREAM_TYPES),
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "An endless text/event-stream",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    **_ERRORS,
                },
            }
        },
        "/api/v1/self-mark": {
            "post": {
                "summary": "A link that marks the browser it is opened in as the sender's own",
                "responses": {
                    "201": _json(
                        {"type": "object", "properties": {"url": {"type": "string"}}},
                        "Open `url` in your browser: your views there count as `self`",
                    ),
                    **_ERRORS,
                },
            }
        },
        "/api/v1/webhooks": {
            "post": {
                "summary": "Subscribe a URL to events: the endpoint, with its secret (shown once)",
                "requestBody": _body("NewWebhook"),
                "responses": {
                    "201": _json(_ref("CreatedWebhook"), "The endpoint and its secret"),
                    **_ERRORS,
                    "422": _json(_ref("Error"), "Not an http(s) URL, or unknown event types"),
                },
            },
            "get": {
                "summary": "Your webhook endpoints",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {"webhooks": {"type": "array", "items": _ref("Webhook")}},
                        },
                        "Your endpoints, oldest first",
                    ),
                    **_ERRORS,
                },
            },
        },
        "/api/v1/webhooks/{webhook_id}": {
            **_read("A webhook endpoint", "webhook_id", "Webhook", "The endpoint", _NO_WEBHOOK),
            "patch": _on_one(
                "Change an endpoint's URL or events, or disable or enable it",
                "webhook_id",
                _NO_WEBHOOK,
                {
                    "200": _json(_ref("Webhook"), "The endpoint, changed"),
                    "422": _json(_ref("Error"), "Invalid field"),
                },
                body="WebhookChange",
            ),
            "delete": _on_one(
                "Delete an endpoint, with its pending deliveries and its log",
                "webhook_id",
                _NO_WEBHOOK,
                {"204": {"description": "Deleted"}},
            ),
        },
        "/api/v1/webhooks/{webhook_id}/rotate-secret": {
            "post": _on_one(
                "A new secret; the previous one keeps signing beside it for a day",
                "webhook_id",
                _NO_WEBHOOK,
                {"200": _json(_ref("NewWebhookSecret"), "The new secret (shown once)")},
            )
        },
        "/api/v1/webhooks/{webhook_id}/deliveries": {
            "get": _on_one(
                "The endpoint's delivery log: every attempt, oldest first, cursor-paginated",
                "webhook_id",
                _NO_WEBHOOK,
                {"200": _listing("deliveries", "DeliveryAttempt")},
                query=_CURSOR,
            )
        },
    },
    "webhooks": WEBHOOKS,
}
