"""The dashboard's pages: what was opened, by whom, on what, and how much of it was robots.

Server-rendered (Jinja2, every value escaped), with a little JavaScript of our own for the live
feed (``/live``: the user's stream over the session) and browser notifications. Everything a
recipient's request carried (User-Agents, URLs) is text here, never markup; only http(s) links
are made clickable.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from mailbeacon import privacy, reports
from mailbeacon.accounts import now_us
from mailbeacon.classify.apple import AppleEgress
from mailbeacon.notify import webhooks
from mailbeacon.notify.alerts import MODES, device, duration, summary
from mailbeacon.notify.events import EVENT_TYPES
from mailbeacon.notify.stream import STREAM_TYPES
from mailbeacon.store import dashboard as store
from mailbeacon.store import notify, queries
from mailbeacon.store import privacy as privacy_store
from mailbeacon.store import webhooks as hooks
from mailbeacon.web import charts
from mailbeacon.web.api import ApiError
from mailbeacon.web.auth import SignedIn, check_csrf, signed_in
from mailbeacon.web.services import Services
from mailbeacon.web.stream import event_stream, start_of
from mailbeacon.web.views import render

PAGE = 50  # messages a page
RECENT = 20  # events on the overview
STATE_NAMES = {
    "opened": "opened",
    "inferred": "clicked (so opened)",
    "machine_only": "only machines",
    "not_opened": "not opened",
}
MINE = "marked_by_sender"


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def page(
    request: Request, template: str, me: SignedIn, nav: str, *, status: int = 200, **values: Any
) -> Response:
    """A dashboard page. It marks the browser as the signed-in sender's own (their views of
    their mail count as ``self``) with an image from ``/self/{mark}`` when the tracking domain
    is this site; otherwise the settings page offers the link to do it."""
    services = _services(request)
    mark = f"{services.settings.public_url}/self/{services.signer.mark(me.user_id)}"
    same_site = urlsplit(services.settings.public_url).netloc == request.url.netloc
    return render(
        request, template, status=status, me=me, nav=nav, self_mark=mark if same_site else None,
        mark_link=mark, **values,
    )  # fmt: skip


def web_url(url: str | None) -> str | None:
    """The URL if a browser may follow it from our pages (http or https), else None."""
    if url and urlsplit(url).scheme.lower() in ("http", "https"):
        return url
    return None


@signed_in
async def overview(request: Request, me: SignedIn) -> Response:
    services = _services(request)
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    today = await services.read(store.human_today, me.user_id, int(midnight.timestamp() * 1e6))
    latest = await services.read(store.latest_events, me.user_id, RECENT, STREAM_TYPES)
    feed = [summary(e.type, e.created_at, json.loads(e.data)) for e in latest]
    return page(request, "app/overview.html", me, "overview", today=today, feed=feed)


@signed_in
async def live(request: Request, me: SignedIn) -> Response:
    """The signed-in user's stream (the API's ``/api/v1/stream``, over the session)."""
    services = _services(request)
    try:
        after = await start_of(request, services, me.user_id)
    except ApiError as exc:  # a Last-Event-ID that is not one of ours: the API's answer
        return PlainTextResponse(exc.message + "\n", status_code=exc.status)
    return event_stream(services, me.user_id, after, STREAM_TYPES)


def _cursor(raw: str | None) -> tuple[int, str] | None:
    created, _, message_id = (raw or "").partition(".")
    return (int(created), message_id) if created.isdigit() and message_id else None


@signed_in
async def message_list(request: Request, me: SignedIn) -> Response:
    query = request.query_params
    text, campaign = query.get("q", "").strip()[:200], query.get("campaign", "").strip()[:200]
    state = query.get("state", "")
    state = state if state in store.STATES else ""
    services = _services(request)
    found = await services.read(
        store.messages, me.user_id, text=text, campaign=campaign, state=state,
        before=_cursor(query.get("before")), limit=PAGE,
    )  # fmt: skip
    rows = [
        {
            "id": m.id,
            "recipient": m.recipient,
            "subject": m.subject,
            "campaign": m.campaign,
            "sent_at": reports.iso(m.sent_at),
            "state": _state(m),
        }
        for m in found
    ]
    more = None
    if len(found) == PAGE:
        last = found[-1]
        filters = {k: v for k, v in (("q", text), ("campaign", campaign), ("state", state)) if v}
        more = "?" + urlencode({**filters, "before": f"{last.created_at}.{last.id}"})
    campaigns = [c[0] for c in await services.read(store.campaigns, me.user_id)]
    return page(request, "app/messages.html", me, "messages", rows=rows, more=more, q=text,
        campaign=campaign, state=state, states=STATE_NAMES, campaigns=campaigns,
    )  # fmt: skip


def _state(m: store.Listed) -> str:
    if m.opened:
        return "opened"
    if m.clicked:
        return "inferred"
    return "machine_only" if m.fetched else "not_opened"


def _after(sent_at: str, time: str) -> str:
    seconds = (datetime.fromisoformat(time) - datetime.fromisoformat(sent_at)).total_seconds()
    return ("−" + duration(-seconds)) if seconds < 0 else duration(seconds)


@signed_in
async def message_page(request: Request, me: SignedIn) -> Response:
    services = _services(request)
    message = await services.read(reports.message, me.user_id, request.path_params["message_id"])
    if message is None:
        return page(request, "app/missing.html", me, "messages", status=404)
    for hit in message["hits"]:
        hit["after"] = _after(message["sent_at"], hit["time"])
        hit["link"] = web_url(hit.get("url"))
        hit["device"] = device(hit["client"]) if hit["client"]["name"] else ""
    return page(request, "app/message.html", me, "messages", message=message,
        state_name=STATE_NAMES[message["state"]],
    )  # fmt: skip


@signed_in
async def this_was_me(request: Request, me: SignedIn) -> Response:
    """ "This was me": the sender says a hit was their own view; it becomes ``self``."""
    await check_csrf(request, me)
    services = _services(request)
    message_id = request.path_params["message_id"]
    message = await services.read(reports.message, me.user_id, message_id)
    hit_id = int(request.path_params["hit_id"])
    hit = next((h for h in (message or {}).get("hits", []) if h["id"] == hit_id), None)
    if hit is None:
        return page(request, "app/missing.html", me, "messages", status=404)
    why = {"rule": MINE, "why": "The sender said this was them, from the dashboard."}
    earlier = [r for r in hit["reasons"] if r.get("rule") != MINE]
    reasons = json.dumps([why, *earlier], ensure_ascii=False)
    await services.writer.run(
        store.mark_self, me.user_id, message_id, hit_id, reasons=reasons, now=now_us()
    )
    return RedirectResponse(f"/messages/{message_id}#hit-{hit_id}", status_code=303)


@signed_in
async def campaign_list(request: Request, me: SignedIn) -> Response:
    found = await _services(request).read(store.campaigns, me.user_id)
    rows = [
        {"name": name, "messages": int(n), "first": reports.iso(first), "last": reports.iso(last)}
        for name, n, first, last in found
    ]
    return page(request, "app/campaigns.html", me, "campaigns", rows=rows)


@signed_in
async def campaign_page(request: Request, me: SignedIn) -> Response:
    services = _services(request)
    name = request.path_params["name"]
    kept = await services.read(store.kept_figures, me.user_id, name)
    if kept is not None:
        found = charts.Figures.kept(kept)
    else:
        computed = await services.read(charts.compute, me.user_id, name)
        if computed is None:
            return page(request, "app/missing.html", me, "campaigns", status=404)
        found = computed
        if found.took >= charts.CHEAP:
            await services.writer.run(charts.keep, me.user_id, name, found)
    await services.writer.run(store.viewed, me.user_id, name, now_us())  # kept ones stay fresh
    if charts.stale(found, now_us()):
        services.keeper.poke()
    return page(request, "app/campaign.html", me, "campaigns", name=name, stats=found.stats,
        charts=found.charts, as_of=reports.iso(found.at), took=found.took,
    )  # fmt: skip


@signed_in
async def settings_page(request: Request, me: SignedIn) -> Response:
    services = _services(request)
    endpoints = [webhooks.describe(e) for e in await services.read(hooks.webhooks, me.user_id)]
    return page(request, "app/settings.html", me, "settings",
        track_default=await services.read(queries.track_default, me.user_id),
        alerts=await services.read(notify.alert_mode, me.user_id), modes=MODES,
        endpoints=endpoints, apple=_apple(services.apple), event_types=EVENT_TYPES,
        keys=[
            {"id": k.id, "prefix": k.prefix, "created_at": reports.iso(k.created_at)}
            for k in await services.read(queries.api_keys_of, me.user_id)
        ],
        upstream=str(services.settings.upstream) if services.settings.upstream else None,
        saved=request.query_params.get("saved"),
        privacy=await _privacy(services, me.user_id),
    )  # fmt: skip


async def _privacy(services: Services, user_id: int) -> dict[str, Any]:
    tracking, required, days = await services.read(privacy_store.user_privacy, user_id)
    keep = services.settings.minimising
    return {"tracking": tracking, "consent_required": required, "retention_days": days,
            "ip_prefix": keep.ip_prefix, "keep_user_agents": keep.keep_user_agents}  # fmt: skip


@signed_in
async def save_privacy(request: Request, me: SignedIn) -> Response:
    form = await check_csrf(request, me)
    days = str(form.get("retention_days", "0")).strip()
    try:
        tracking = privacy.mode(form.get("tracking"))
    except ValueError:
        tracking = "full"
    if not days.isdigit() or int(days) > 36500:
        return RedirectResponse("/settings#privacy", status_code=303)
    await _services(request).writer.run(
        privacy_store.set_user_privacy, me.user_id, tracking=tracking,
        consent_required=form.get("consent_required") == "on", retention_days=int(days),
    )  # fmt: skip
    return RedirectResponse("/settings?saved=1#privacy", status_code=303)


def _apple(egress: AppleEgress) -> dict[str, Any]:
    return egress.status.as_json(datetime.now(UTC))


@signed_in
async def save_settings(request: Request, me: SignedIn) -> Response:
    form = await check_csrf(request, me)
    writer = _services(request).writer
    await writer.run(queries.set_track_default, me.user_id, form.get("track_default") == "on")
    mode = form.get("alerts")
    if mode in MODES:
        await writer.run(notify.set_alert_mode, me.user_id, mode)
    return RedirectResponse("/settings?saved=1", status_code=303)


@signed_in
async def add_webhook(request: Request, me: SignedIn) -> Response:
    form = await check_csrf(request, me)
    try:
        endpoint, secret = await _services(request).writer.run(
            webhooks.create, me.user_id, form.get("url"), form.getlist("events"), now=now_us()
        )
    except webhooks.Invalid as exc:
        return page(request, "app/problem.html", me, "settings", problem=str(exc),
                      status=422)  # fmt: skip
    return page(request, "app/webhook.html", me, "settings",
                  endpoint=webhooks.describe(endpoint), secret=secret, log=[])  # fmt: skip


@signed_in
async def webhook_page(request: Request, me: SignedIn) -> Response:
    services, webhook_id = _services(request), request.path_params["webhook_id"]
    endpoint = await services.read(hooks.webhook, webhook_id, me.user_id)
    log = await services.read(webhooks.delivery_log, webhook_id, me.user_id, 0, 200)
    if endpoint is None or log is None:
        return page(request, "app/missing.html", me, "settings", status=404)
    return page(request, "app/webhook.html", me, "settings",
                  endpoint=webhooks.describe(endpoint), log=log["deliveries"])  # fmt: skip


@signed_in
async def delete_webhook(request: Request, me: SignedIn) -> Response:
    await check_csrf(request, me)
    webhook_id = request.path_params["webhook_id"]
    await _services(request).writer.run(webhooks.delete, webhook_id, me.user_id)
    return RedirectResponse("/settings#webhooks", status_code=303)


ROUTES = [
    Route("/", overview, methods=["GET"]),
    Route("/live", live, methods=["GET"]),
    Route("/messages", message_list, methods=["GET"]),
    Route("/messages/{message_id}", message_page, methods=["GET"]),
    Route("/messages/{message_id}/hits/{hit_id:int}/mine", this_was_me, methods=["POST"]),
    Route("/campaigns", campaign_list, methods=["GET"]),
    Route("/campaigns/{name:path}", campaign_page, methods=["GET"]),  # a name may hold "/"
    Route("/settings", settings_page, methods=["GET"]),
    Route("/settings", save_settings, methods=["POST"]),
    Route("/settings/privacy", save_privacy, methods=["POST"]),
    Route("/settings/webhooks", add_webhook, methods=["POST"]),
    Route("/settings/webhooks/{webhook_id}", webhook_page, methods=["GET"]),
    Route("/settings/webhooks/{webhook_id}/delete", delete_webhook, methods=["POST"]),
]
