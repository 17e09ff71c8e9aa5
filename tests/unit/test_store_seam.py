"""The store seam: no module outside `services/core/store/` uses a collection.

Each collection has one module in the store package with named operations (the audience
queries, the sender's marks, deliveries, registrations, ...); services call those. A
database may still pass through a service on its way to them, and a service may ping it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from pymongo.asynchronous.database import AsyncDatabase

import services

SERVICES = Path(services.__file__).parent
STORE = SERVICES / "core" / "store"

# What pymongo's database answers for a public name it does not define: the collection of
# that name. These it defines.
_DATABASE_ATTRIBUTES = frozenset(name for name in dir(AsyncDatabase) if not name.startswith("_"))
# Methods that take a collection's name, on a database or anything else.
_COLLECTION_METHODS = frozenset(
    {"get_collection", "create_collection", "drop_collection", "validate_collection"}
)
_COLLECTION_TYPES = frozenset({"AsyncCollection", "Collection"})


def _is_database(node: ast.expr) -> bool:
    """Whether the expression names a database, as services name them: `db`, `self._db`,
    `app.db`, `collection.database`, `store.database(client)`."""
    if isinstance(node, ast.Call):
        node = node.func
    name = node.id if isinstance(node, ast.Name) else getattr(node, "attr", "")
    return name in ("db", "database") or name.endswith("_db")


def collection_uses(source: str) -> list[str]:
    """Each use of a collection in the module's source, as `line: what`."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute):
            if _is_database(node.value) and not node.attr.startswith("_"):
                if node.attr not in _DATABASE_ATTRIBUTES or node.attr in _COLLECTION_METHODS:
                    found.append(f"{node.lineno}: {ast.unparse(node)}")
            elif node.attr in _COLLECTION_TYPES | _COLLECTION_METHODS:
                found.append(f"{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.Subscript) and _is_database(node.value):
            found.append(f"{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in _COLLECTION_METHODS:
                found.append(f"{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pymongo"):
            names = {alias.name for alias in node.names}
            if (node.module or "").endswith(".collection") or names & _COLLECTION_TYPES:
                found.append(f"{node.lineno}: import from {node.module}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("pymongo") and alias.name.endswith(".collection"):
                    found.append(f"{node.lineno}: import {alias.name}")
    return sorted(found, key=lambda use: int(use.partition(":")[0]))


def test_no_module_outside_the_store_package_uses_a_collection() -> None:
    uses = [
        f"{path.relative_to(SERVICES.parent)}:{use}"
        for path in sorted(SERVICES.rglob("*.py"))
        if not path.is_relative_to(STORE)
        for use in collection_uses(path.read_text())
    ]
    assert not uses, "collections used outside services/core/store/:\n" + "\n".join(uses)


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("db.devices.find({})", "db.devices"),
        ("self._db.sending.find_one({})", "self._db.sending"),
        ("app.db.apps", "app.db.apps"),
        ("collection.database.ledger", "collection.database.ledger"),
        ("store.database(client).marks", "store.database(client).marks"),
        ('db["registrations"]', "db['registrations']"),
        ('self._db["idempotency"]', "self._db['idempotency']"),
        ('db.get_collection("devices")', "db.get_collection"),
        ('client.pushline.get_collection("devices")', "client.pushline.get_collection"),
        ('get_collection("devices")', "get_collection('devices')"),
        ('db.create_collection("devices")', "db.create_collection"),
        (
            "from pymongo.asynchronous.collection import AsyncCollection",
            "import from pymongo.asynchronous.collection",
        ),
        ("from pymongo.collection import Collection", "import from pymongo.collection"),
        ("import pymongo.asynchronous.collection", "import pymongo.asynchronous.collection"),
        (
            "x: pymongo.asynchronous.collection.AsyncCollection[Document]",
            "pymongo.asynchronous.collection.AsyncCollection",
        ),
    ],
)
def test_each_way_to_reach_a_collection_is_found(source: str, found: str) -> None:
    assert collection_uses(source) == [f"1: {found}"]


@pytest.mark.parametrize(
    "source",
    [
        "DevicesRepository(db).find(app_id, token_hash)",
        "await expand(request, app.db, after)",
        'await db.command("ping")',
        "db.name",
        "self._db.client",
        "store.database(mongo)",
        "from pymongo.asynchronous.database import AsyncDatabase",
        "devices.find(query)",
        'settings["mongodb_uri"]',
        "self._devices",
    ],
)
def test_a_database_passed_along_or_pinged_is_no_collection_use(source: str) -> None:
    assert collection_uses(source) == []
