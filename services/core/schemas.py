"""JSON Schema of every topic's messages, exported to `schemas/` for other teams' producers.

`python -m services.core.schemas` (or `make schemas`) rewrites the files; a test fails
when they drift from `services.core.events` (job topics: the built-in providers').
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from services.core.topics import all_topics, model_of

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"


def topic_schemas() -> dict[str, str]:
    """File name -> JSON text of each topic's message schema."""
    files: dict[str, str] = {}
    for each in all_topics():
        topic, adapter = each.name, model_of(each)
        schema: dict[str, Any] = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"https://pushline.dev/schemas/{topic}.json",
            **adapter.json_schema(mode="validation"),
            "title": topic,
        }
        files[f"{topic}.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return files


def write(directory: Path = SCHEMA_DIR) -> list[Path]:
    """Write every schema file into `directory`; return the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in topic_schemas().items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write():
        sys.stdout.write(f"wrote {path}\n")
