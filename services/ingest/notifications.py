"""The native API's sends, `/v1/...`: send a notification (to contacts, tokens, the whole
app or a segment; content per language; message options and per-provider overrides; a
callback; a schedule), read its state, cancel it, report what the user did with it. Bearer
API key; errors are RFC 9457 problem+json.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, ConfigDict, Discriminator, Field, RootModel, model_validator

from services.core.errors import IdempotencyConflictError
from services.core.events import (
    MAX_SCHEDULE_AHEAD,
    Audience,
    ClickUrl,
    Content,
    DeviceEvent,
    InteractionType,
    NotificationTag,
    Options,
    PriorityLane,
    SendCallback,
    SendRequest,
    utc_now,
)
from services.core.fields import DEFAULT_LANGUAGE, MAX_LANGUAGES, Platform
from services.core.filters import Filter
from services.core.overrides import (
    ApnsOverride,
    FcmOverride,
    InterruptionLevel,
    LocArgs,
    LocKey,
    WebPushOverride,
    loc_args_problem,
)
from services.core.providers.payload import fitted
from services.ingest import callbacks
from services.ingest.auth import Caller, Registrar, bearer, permit, tenants_of
from services.ingest.bodies import (
    Body,
    Cellphone,
    Email,
    NonBlank,
    TokenText,
    documented,
    form,
    parse,
)
from services.ingest.problems import responses
from services.ingest.refusals import Invalid, Problem, Refusal
from services.ingest.sending import Sends, sends_of, shown
from services.ingest.throttle import throttle_of

router = APIRouter(prefix="/v1", tags=["Native API"], responses=responses(400, 401, 403, 404, 429))


# Selector values per send request; larger audiences are addressed by contact lists
# published on Kafka in several requests, or by several HTTP calls.
MAX_SELECTOR = 10_000
Selector = Annotated[list[NonBlank], Field(max_length=MAX_SELECTOR)]


class Target(Body):
    """Who receives it: any mix of raw tokens, contact ids, cellphones and emails; or
    alone `all` (every active device of the app) or `filters` (the active devices of the
    app in a segment: conditions on tags, platform, language, registration and activity
    times, under `and` / `or` two deep at most).

    `platforms` narrows `all`, `filters`, the contact ids, cellphones and emails (not the
    raw tokens)."""

    all: bool = False
    tokens: Annotated[list[TokenText], Field(max_length=MAX_SELECTOR, default_factory=list)]
    contact_ids: Annotated[Selector, Field(default_factory=list)]
    cellphones: Annotated[
        list[Cellphone],
        Field(max_length=MAX_SELECTOR, default_factory=list),
    ]
    emails: Annotated[
        list[Email],
        Field(max_length=MAX_SELECTOR, default_factory=list),
    ]
    platforms: Annotated[list[Platform], Field(default_factory=list)]
    filters: Filter | None = None

    @model_validator(mode="after")
    def _all_or_named(self) -> Target:
        named = self.tokens or self.contact_ids or self.cellphones or self.emails
        if self.all and self.filters is not None:
            raise ValueError("all addresses every device of the app: it takes no filters")
        if (self.all or self.filters is not None) and named:
            which = "all" if self.all else "filters"
            raise ValueError(
                f"{which} addresses devices of the app: it takes no tokens, contact_ids, "
                "cellphones or emails (platforms narrows it)"
            )
        if not (self.all or self.filters is not None or named):
            raise ValueError(
                "name at least one token, contact id, cellphone or email, or all, or filters"
            )
        return self


class Notification(Body):
    """What the user sees."""

    title: Annotated[str, Field(max_length=1000)] = ""
    body: Annotated[str, Field(max_length=4000)] = ""
    image_url: Annotated[str, Field(max_length=2048)] | None = None

    @model_validator(mode="after")
    def _title_or_body(self) -> Notification:
        if not (self.title.strip() or self.body.strip()):
            raise ValueError("give a title, a body or both")
        return self


# A language of per-language content, in any case ("pt-BR"), or the fallback.
LanguageKey = Annotated[
    str, Field(pattern=rf"^({DEFAULT_LANGUAGE}|[A-Za-z]{{2,3}}(-[A-Za-z0-9]{{1,8}}){{0,3}})$")
]


class Localized(RootModel[dict[LanguageKey, Notification]]):
    """Content per device language, with the `default` other languages get."""

    model_config = ConfigDict(frozen=True, strict=True)

    @model_validator(mode="after")
    def _has_default(self) -> Localized:
        if DEFAULT_LANGUAGE not in self.root:
            raise ValueError(f"give the {DEFAULT_LANGUAGE!r} content other languages get")
        if len(self.root) > MAX_LANGUAGES + 1:
            raise ValueError(f"at most {MAX_LANGUAGES} languages besides the default")
        if len({language.lower() for language in self.root}) < len(self.root):
            raise ValueError("a language is named twice (languages are case-insensitive)")
        return self

    def contents(self) -> tuple[Content, dict[str, Content]]:
        """The default content, and each language's (lower-case)."""
        content = {language.lower(): _content(n) for language, n in self.root.items()}
        return content.pop(DEFAULT_LANGUAGE), content


_ONE, _LANGUAGES = form("one"), form("languages")


def _one_or_languages(value: object) -> str:
    # A language's content is an object; a notification's own fields are strings.
    if isinstance(value, dict) and any(isinstance(v, dict) for v in value.values()):
        return _LANGUAGES.tag
    return _ONE.tag


def _content(notification: Notification) -> Content:
    return Content(
        title=notification.title, body=notification.body, image_url=notification.image_url
    )


class AndroidSendOptions(Body):
    """What only Android shows: the notification channel, the small icon and its tint."""

    channel_id: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    color: Annotated[str, Field(pattern=r"^#[0-9A-Fa-f]{6}$")] | None = None
    icon: Annotated[str, Field(min_length=1, max_length=100)] | None = None


class SendOptions(Body):
    """How to deliver: time to live (seconds), priority, collapse key, send_to, dry run,
    truncate (the body, to fit); a background push (`content_available`, with data and no
    notification); how a shown notification looks: badge, sound, thread_id, category,
    interruption_level, mutable_content, android channel_id, color and icon, click_url, tag,
    localisation keys; per-provider overrides (`apns`, `fcm`, `webpush`), merged last; and
    the priority lane its jobs take."""

    ttl: Annotated[int, Field(ge=0, le=2_419_200)] | None = None
    priority: Literal["normal", "high"] = "high"
    collapse_key: Annotated[str, Field(max_length=64)] | None = None
    send_to: Literal["all", "latest"] | None = None
    dry_run: bool = False
    # Shorten the body to fit every provider of the app rather than refuse it.
    truncate: bool = False
    content_available: bool = False
    # "increment" is read to be refused with why, rather than as a wrong type.
    badge: Annotated[int, Field(ge=0, le=99_999)] | Literal["increment"] | None = None
    sound: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    thread_id: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    category: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    interruption_level: InterruptionLevel | None = None
    mutable_content: bool = False
    android: AndroidSendOptions | None = None
    click_url: ClickUrl | None = None
    tag: NotificationTag | None = None
    title_loc_key: LocKey | None = None
    title_loc_args: LocArgs = ()
    body_loc_key: LocKey | None = None
    body_loc_args: LocArgs = ()
    apns: ApnsOverride | None = None
    fcm: FcmOverride | None = None
    webpush: WebPushOverride | None = None
    priority_lane: PriorityLane | None = Field(
        default=None,
        description="The sender serves transactional jobs before bulk ones. Absent: bulk "
        "for to.all and to.filters, transactional for contact ids, cellphones, emails and "
        "tokens.",
    )

    @model_validator(mode="after")
    def _args_have_keys(self) -> SendOptions:
        problem = loc_args_problem(self.title_loc_key, self.title_loc_args, "title")
        problem = problem or loc_args_problem(self.body_loc_key, self.body_loc_args, "body")
        if problem:
            raise ValueError(problem)
        return self


class NotificationRequest(Body):
    """`POST /v1/notifications`."""

    app_id: NonBlank
    to: Target
    # Optional with data: a data-only push. A map of languages to content (with a
    # `default`) sends each device the content of its language.
    notification: (
        Annotated[
            Annotated[Notification, _ONE] | Annotated[Localized, _LANGUAGES],
            Discriminator(_one_or_languages),
        ]
        | None
    ) = None
    data: Annotated[dict[str, str], Field(max_length=100, default_factory=dict)]
    options: SendOptions = SendOptions()
    callback_url: (
        Annotated[
            str,
            Field(
                min_length=1,
                max_length=callbacks.MAX_URL,
                description="POSTed to once the send ends, with its state and counters "
                "(http or https, to a public address).",
            ),
        ]
        | None
    ) = None
    callback_events: Annotated[
        list[DeviceEvent],
        Field(
            max_length=3,
            default_factory=list,
            description="Device outcomes to POST to callback_url as they come, in batches.",
        ),
    ]
    # RFC 3339 with a time zone, up to 30 days ahead: held until then (the past: now).
    send_at: AwareDatetime | None = None


class InteractionEvent(Body):
    """`POST /v1/events`: what the user did with a notification on one device."""

    notification_id: NonBlank
    token: TokenText
    type: InteractionType


@router.post(
    "/notifications",
    status_code=202,
    openapi_extra=documented(NotificationRequest),
    responses=responses(422),
    callbacks=callbacks.documentation.routes,
)
async def send_notification(account: Caller, request: Request) -> Response:
    """Send a notification; 202 with its id. A repeated `Idempotency-Key` (24 hours)
    with the same body answers the first request's id and sends nothing new; with another
    body, 422."""
    body = parse(NotificationRequest, await request.body())
    if (body.to.all or body.to.filters is not None) and body.options.send_to == "latest":
        # `latest` picks among a contact's devices; `all` and `filters` name devices.
        which = "to.all" if body.to.all else "to.filters"
        raise Invalid([Problem("options.send_to", f"{which} addresses devices: not latest")])
    app = await tenants_of(request).app(account, body.app_id)
    if app is None:
        raise Refusal(404, f"app {body.app_id} not found")
    if body.options.badge == "increment":
        raise Invalid([Problem("options.badge", BADGE_INCREMENT)])
    if isinstance(body.notification, Localized):
        content, localized = body.notification.contents()
    else:
        content = Content() if body.notification is None else _content(body.notification)
        localized = {}
    options = Options(**body.options.model_dump(exclude={"truncate"}))
    unshown = _unshown(body.notification, body.data, options)
    if unshown:
        raise Invalid(unshown)
    providers = sorted(app.configured)
    if body.options.truncate:
        content = fitted(content, body.data, options, providers)
        localized = {
            language: fitted(each, body.data, options, providers)
            for language, each in localized.items()
        }
    for where, each in [("notification", content)] + [
        (f"notification.{language}", each) for language, each in localized.items()
    ]:
        refused = Sends.check(each, body.data, options, providers)
        if refused is not None:
            raise Invalid([Problem(where, refused)])
    key = request.headers.get("idempotency-key")
    if key is not None and not 0 < len(key) <= 200:
        raise Invalid([Problem("Idempotency-Key", "must be 1 to 200 characters")])
    callback = _callback(body, bearer(request) or "", sends_of(request).allow_private_callbacks)
    accepted_at = utc_now()
    _check_schedule(body.send_at, accepted_at)
    send = SendRequest(
        notification_id=str(uuid.uuid4()),
        account_id=account.id,
        app_id=app.id,
        to=Audience(
            all=body.to.all,
            tokens=body.to.tokens,
            contact_ids=body.to.contact_ids,
            cellphones=body.to.cellphones,
            emails=body.to.emails,
            platforms=body.to.platforms,
            filters=body.to.filters,
        ),
        notification=content,
        localized=localized,
        data=body.data,
        options=options,
        callback=callback,
        accepted_at=accepted_at,
        send_at=body.send_at,
    )
    await throttle_of(request).send(account.id, app.id)
    try:
        notification_id = await sends_of(request).accept(send, key)
    except IdempotencyConflictError as exc:
        raise Refusal(422, str(exc)) from exc
    return JSONResponse(
        {"id": notification_id},
        status_code=202,
        headers={"Location": f"/v1/notifications/{notification_id}"},
    )


BADGE_INCREMENT = (
    "increment is not supported: APNs sets the badge to a number and has no increment, and "
    "Pushline keeps no count per device; send the number to show"
)


def _callback(body: NotificationRequest, api_key: str, allow_private: bool) -> SendCallback | None:
    """The send's callback, signed with the caller's key. Raises Invalid for a URL
    Pushline will not call."""
    if body.callback_url is None:
        if body.callback_events:
            raise Invalid([Problem("callback_events", "are POSTed to callback_url: give one")])
        return None
    problem = callbacks.url_problem(body.callback_url, allow_private=allow_private)
    if problem is not None:
        raise Invalid([Problem("callback_url", problem)])
    return SendCallback(
        url=body.callback_url,
        signature=callbacks.signature(api_key, body.callback_url),
        # Each kind once, in a fixed order: the same request, the same fingerprint.
        events=sorted(set(body.callback_events)),
    )


def _check_schedule(send_at: datetime | None, now: datetime) -> None:
    """Raises Invalid for a `send_at` beyond MAX_SCHEDULE_AHEAD from now."""
    if send_at is not None and send_at - now > MAX_SCHEDULE_AHEAD:
        raise Invalid([Problem("send_at", f"must be at most {MAX_SCHEDULE_AHEAD.days} days ahead")])


def _unshown(
    notification: Notification | Localized | None, data: dict[str, str], options: Options
) -> list[Problem]:
    """What is wrong with a send that shows nothing: it needs data (a data-only push), and
    a background push or one without a notification takes no option that only shows."""
    if notification is None and not data:
        return [Problem("notification", "give a notification, data or both")]
    if notification is not None and options.content_available:
        return [
            Problem(
                "options.content_available",
                "a background push shows nothing: send data without a notification",
            )
        ]
    if notification is None:
        return [
            Problem(f"options.{name}", "only a shown notification has it: give a notification")
            for name in options.shown()
        ]
    return []


@router.get("/notifications/{notification_id}")
async def notification_status(notification_id: str, account: Caller, request: Request) -> Response:
    """State (scheduled, accepted, resolving, sending, done, cancelled), `send_at`,
    counters and per-platform counts."""
    found = await sends_of(request).notification(account.id, notification_id)
    if found is None:
        raise Refusal(404, f"notification {notification_id} not found")
    return JSONResponse(shown(found))


@router.delete("/notifications/{notification_id}", status_code=202, responses=responses(409))
async def cancel_notification(notification_id: str, account: Caller, request: Request) -> Response:
    """Cancel a notification: a scheduled one never sends, a sending one makes no more
    provider calls (its counters say how many went out); 202 with its status, `cancelled`
    (also when it was before). 409 once it is done."""
    found = await sends_of(request).cancel(account.id, notification_id)
    if found is None:
        raise Refusal(404, f"notification {notification_id} not found")
    if found["state"] == "done":
        raise Refusal(409, f"notification {notification_id} is done: nothing left to cancel")
    return JSONResponse(shown(found), status_code=202)


@router.post("/events", status_code=202, openapi_extra=documented(InteractionEvent))
async def report_interaction(holder: Registrar, request: Request) -> Response:
    """Report that a notification was delivered, opened, clicked or dismissed on a device
    it was sent to (404 for any other device). A publishable key reports on notifications
    of the apps it names only (403 for others)."""
    body = parse(InteractionEvent, await request.body())
    sends = sends_of(request)
    found = await sends.notification(holder.account.id, body.notification_id)
    if found is None:
        raise Refusal(404, f"notification {body.notification_id} not found")
    permit(holder, found.get("app_id"))
    if not await sends.reached(found, body.token):
        raise Refusal(404, f"notification {body.notification_id} was not sent to this device")
    await sends.report(found, body.token, body.type)
    return Response(status_code=202)
