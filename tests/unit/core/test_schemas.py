from __future__ import annotations

import json

from services.core.schemas import SCHEMA_DIR, topic_schemas
from services.core.topics import all_topics


def test_checked_in_schemas_match_the_models() -> None:
    expected = topic_schemas()
    on_disk = {path.name: path.read_text() for path in SCHEMA_DIR.glob("*.json")}
    assert set(on_disk) == set(expected), "run `make schemas`"
    for name, text in expected.items():
        assert on_disk[name] == text, f"{name} is stale: run `make schemas`"


def test_every_topic_has_a_schema() -> None:
    names = {json.loads(text)["title"] for text in topic_schemas().values()}
    assert names == {topic.name for topic in all_topics()}
