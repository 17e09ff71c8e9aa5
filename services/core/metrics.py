"""Every `pushline_*` Prometheus metric, defined once.

Seconds for time; labels with few values (route, status, provider, outcome, reason);
never a token or contact as a label, and an app id only where the alert must name the app
(`APP_CREDENTIALS_VALID`: one series per app and provider with credentials, as few as the
apps an operator created).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, Info

INGEST_REQUESTS = Counter(
    "pushline_ingest_requests_total",
    "HTTP requests answered by the ingest.",
    ["route", "status"],
)
INGEST_LATENCY = Histogram(
    "pushline_ingest_request_seconds",
    "Time from request to response at the ingest.",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)

REGISTRATIONS = Counter(
    "pushline_registrations_total",
    "Registration requests decided, by status and failure reason.",
    ["status", "reason"],
)
WEBHOOKS = Counter(
    "pushline_webhooks_total",
    "Webhook calls finished, by outcome (delivered, failed, refused).",
    ["outcome"],
)
DEAD_LETTERS = Counter(
    "pushline_dead_letters_total",
    "Messages parked on push.dlq, by the topic they came from.",
    ["topic"],
)

SENDS = Counter(
    "pushline_sends_total",
    "Jobs finished by a provider, by outcome (success, invalid_token, retry, failed, duplicate, "
    "cancelled).",
    ["provider", "outcome"],
)
TOKENS_INVALIDATED = Counter(
    "pushline_tokens_invalidated_total",
    "Devices marked invalid from a provider's answer, by provider and reason.",
    ["provider", "reason"],
)
JOBS_RESOLVED = Counter(
    "pushline_jobs_resolved_total",
    "Delivery jobs produced by the resolver's fan-out, by provider.",
    ["provider"],
)

PROVIDER_LATENCY = Histogram(
    "pushline_provider_call_seconds",
    "Time of one provider call (a batch of jobs of one app).",
    ["provider"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
END_TO_END = Histogram(
    "pushline_end_to_end_seconds",
    "Time from a request's acceptance to the provider's final answer for one job.",
    ["provider"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0),
)
PROVIDER_AUTH_FAILURES = Counter(
    "pushline_provider_auth_failures_total",
    "Sends refused because an app's provider credentials or configuration are wrong.",
    ["provider"],
)
APP_CREDENTIALS_VALID = Gauge(
    "pushline_app_credentials_valid",
    "Whether the provider took an app's credentials when last checked (1) or refused them (0); "
    "no series until a provider has said either.",
    ["app", "provider"],
)
OUTAGE_RETRIES = Counter(
    "pushline_outage_retries_total",
    "Work a worker paused and tried again because the store or the broker did not answer.",
    ["work"],
)
CONSUMER_LAG = Gauge(
    "pushline_consumer_lag",
    "Messages a worker's consumer group has yet to process, per topic and partition it reads.",
    ["topic", "partition"],
)
SENDER_IN_FLIGHT = Gauge(
    "pushline_sender_in_flight_jobs",
    "Jobs a sender holds: in provider calls, or waiting for a retry, per priority lane. "
    "Bounded by PUSHLINE_SEND_CONCURRENCY batches (both lanes) plus the retries allowed "
    "to wait.",
    ["provider", "lane"],
)
SENDER_JOBS = Counter(
    "pushline_sender_jobs_total",
    "Jobs a sender took from its job topics, per provider and priority lane.",
    ["provider", "lane"],
)
RETENTION_REMOVED = Counter(
    "pushline_retention_removed_total",
    "Documents the retention job removed because they outlived their retention, by collection.",
    ["collection"],
)
EVENT_LOOP = Info(
    "pushline_event_loop",
    "The event loop implementation the process runs on (uvloop, or asyncio).",
)

THROTTLED = Counter(
    "pushline_throttled_requests_total",
    "Requests the ingest refused 429 because an account's rate limit was reached, by limit "
    "(requests, app_sends).",
    ["limit"],
)
FANOUT_PACED_SECONDS = Counter(
    "pushline_fanout_paced_seconds_total",
    "Seconds fan-outs waited for their account's notifications-per-second limit.",
)
FANOUTS_PACED = Gauge(
    "pushline_fanouts_paced",
    "Fan-outs of this resolver waiting right now for their account's notifications-per-second "
    "limit.",
)

# Scope: a quota scope of the provider (an FCM project, an APNs team, a push service
# origin named in PUSHLINE_PROVIDER_QUOTAS; `other` for the origins not named there).
PROVIDER_QUOTA_BUDGET = Gauge(
    "pushline_provider_quota_budget",
    "Sends per second the senders together allow a provider's quota scope (set once a send "
    "of the scope is seen; no series for a scope without a budget).",
    ["provider", "scope"],
)
PROVIDER_QUOTA_USED = Counter(
    "pushline_provider_quota_used_total",
    "Sends that took their quota scope's budget.",
    ["provider", "scope"],
)
PROVIDER_QUOTA_THROTTLED = Counter(
    "pushline_provider_quota_throttled_total",
    "Sends that waited for their quota scope: its budget was spent, or the provider had "
    "answered 429 with Retry-After.",
    ["provider", "scope"],
)
PROVIDER_QUOTA_WAIT_SECONDS = Counter(
    "pushline_provider_quota_wait_seconds_total",
    "Seconds provider calls waited for their quota scope.",
    ["provider", "scope"],
)
PROVIDER_QUOTA_PAUSES = Counter(
    "pushline_provider_quota_pauses_total",
    "Answers 429 that paused a quota scope for every sender.",
    ["provider", "scope"],
)
