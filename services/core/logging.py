"""JSON logging: one object per line, with the record's `extra` fields.

Device tokens go through `services.core.tokens.redact()` before they reach a log call, URLs
through `url_origin()`; secrets never do.
"""

from __future__ import annotations

import json
import logging
import logging.config
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

# Attributes every LogRecord has; anything else came from `extra=`.
# uvicorn adds `color_message`, the same text with terminal colours.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "color_message",
}

# Library loggers that write whole messages at DEBUG: aiokafka's producer every record it
# sends, PyMongo every command with its documents. Both carry device tokens, so they stay
# at INFO even when the services log at DEBUG.
_PAYLOAD_LOGGERS = ("aiokafka.producer.producer", "pymongo.command")
# Library loggers that write every request's URL or headers: httpx at INFO, the rest at
# DEBUG. A Web Push endpoint is a device's identifier, a webhook URL may hold user:password,
# an HTTP/2 header block (hpack, h2) an APNs device token and bearer JWT; and at one line per
# provider call they would flood the logs of a large send. They stay at WARNING.
_URL_LOGGERS = (
    "httpx",
    "httpcore",
    "urllib3",
    "google.auth.transport",
    "firebase_admin",
    "hpack",
    "h2",
    "aiohttp.access",
)


class JSONFormatter(logging.Formatter):
    """Formats a record as a single JSON object."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def dict_config(level: str, service: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` that writes JSON to stderr, tagged with the service.

    Faust's worker takes the same dict, so its own records come out as JSON too.
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"service": {"()": ServiceTag, "service": service}},
        "formatters": {"json": {"()": JSONFormatter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "filters": ["service"],
            }
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            **{name: {"level": "INFO"} for name in _PAYLOAD_LOGGERS},
            **{name: {"level": "WARNING"} for name in _URL_LOGGERS},
            # Administrative actions are recorded whatever the level of the other lines.
            "services.core.audit": {"level": "INFO"},
        },
    }


def url_origin(url: str) -> str:
    """What a log line may show of a URL: its scheme and host only. The rest may name a
    device (a Web Push endpoint's path) or hold a secret (user:password, a query token)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://[{host}]" if ":" in host else f"{parts.scheme}://{host}"


def configure(level: str, service: str) -> None:
    """Configure the root logger with `dict_config`."""
    logging.config.dictConfig(dict_config(level, service))


class ServiceTag(logging.Filter):
    """Adds `service` to every record."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        return True
