"""The local store (deploy/local/StoreServer.java) through a long scan and a kill -9, and
the operation counts it answers `top` with.

A query walks the collection from the MVStore version it started on, while the store's
background compaction moves live pages out of sparse chunks. Without the store pinning that
version, a chunk the scan had still to read was dropped a few commits after it went dead
(its retention time counts from when it was written), and at 1,000,000 devices every long
scan failed with "Chunk N not found". Here the store runs with a retention time of 0 (space
reusable as soon as a chunk dies), a small cache and frequent commits, and a costly filter
makes one scan of a small collection outlive as many commits as a scan of a million devices
does. (Without the pin, measured here, 2 of 3 runs fail.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pymongo import MongoClient

from services.core.store.client import Document
from tests.fault.conftest import Stack

pytestmark = pytest.mark.integration

DOCUMENTS = 20_000
# Neighbouring documents (by _id), on leaf pages of their own.
BLOCK = 500
# Regular expressions each document is matched against before the clause that matches it.
COSTLY = 50
EVERY_DOCUMENT_SLOWLY = {
    "$or": [{"pad": {"$regex": f"^absent{i}"}} for i in range(COSTLY)] + [{"n": {"$gte": 0}}]
}
# Seconds to go on scanning (each scan after a rewrite).
SCANNING = 15.0
# The store's commit interval here (20 times as often as by default): versions go by fast,
# so a scan of seconds outlives many of them.
COMMIT_SECONDS = 0.05
# Documents written just before the kill -9.
KEPT = 1000
# What `top` counts per namespace, as MongoDB's does.
KINDS = ("queries", "getmore", "insert", "update", "remove", "commands", "total")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Stack]:
    """A store of the test's own; its Kafka is never started (`up` leaves out a component
    whose PUSHLINE_* address names another server)."""
    stack = Stack(tmp_path)
    stack.env.update(PUSHLINE_KAFKA_BOOTSTRAP="elsewhere:9092", PUSHLINE_STORE_RETENTION_MS="0")
    # A cache far smaller than the data, as 16 MB is beside a million devices: the scan
    # reads its pages from the file.
    stack.env["PUSHLINE_STORE_CACHE_MB"] = "1"
    stack.env["PUSHLINE_STORE_COMMIT_MS"] = str(int(COMMIT_SECONDS * 1000))
    try:
        stack.up()
        yield stack
    finally:
        stack.down()


def connect(uri: str) -> MongoClient[Document]:
    return MongoClient(uri)


def write_elsewhere(uri: str, stop: threading.Event) -> None:
    """Write another collection all along: commits go on while a scan holds the scanned
    collection."""
    with connect(uri) as client:
        other = client.get_default_database().other
        rounds = 0
        while not stop.is_set():
            rounds += 1
            other.insert_many([{"round": rounds, "pad": "y" * 200} for _ in range(200)])
            other.delete_many({"round": {"$lt": rounds - 5}})


def test_a_long_scan_sees_every_document_and_data_survives_a_kill(store: Stack) -> None:
    with connect(store.mongodb) as client:
        db = client.get_default_database()
        for start in range(0, DOCUMENTS, 5000):
            db.devices.insert_many(
                [
                    {"_id": f"d{n:06d}", "n": n, "block": n // BLOCK, "pad": "x" * 200}
                    for n in range(start, start + 5000)
                ]
            )
        stop = threading.Event()
        writer = threading.Thread(target=write_elsewhere, args=(store.mongodb, stop))
        writer.start()
        scans, started = 0, time.monotonic()
        try:
            while time.monotonic() - started < SCANNING:
                # Every other block of neighbours rewritten: the chunks holding the rest go
                # half empty, and compaction moves the rest while the scan runs.
                db.devices.update_many({"block": {"$mod": [2, scans % 2]}}, {"$inc": {"v": 1}})
                found = db.devices.find(EVERY_DOCUMENT_SLOWLY, {"_id": 1}, batch_size=DOCUMENTS)
                assert len(found.to_list()) == DOCUMENTS
                scans += 1
        finally:
            stop.set()
            writer.join()
        db.kept.insert_many([{"_id": n} for n in range(KEPT)])
    # A kill -9 loses only what was acknowledged after the last commit: wait for many.
    time.sleep(40 * COMMIT_SECONDS)
    store.kill_store()
    store.up()
    with connect(store.mongodb) as client:
        db = client.get_default_database()
        assert db.devices.count_documents({}) == DOCUMENTS
        assert db.kept.count_documents({}) == KEPT


def test_top_counts_the_commands_on_each_collection(store: Stack) -> None:
    with connect(store.mongodb) as client:
        db = client.get_default_database()
        db.devices.insert_many([{"_id": n} for n in range(10)])
        db.devices.find_one({"_id": 3})
        # One find and four getMores: five batches of two.
        assert len(db.devices.find({}, batch_size=2).to_list()) == 10
        db.devices.update_many({}, {"$set": {"seen": True}})
        db.devices.delete_one({"_id": 0})
        db.devices.find_one_and_update({"_id": 1}, {"$inc": {"n": 1}})
        client.other.devices.insert_one({"_id": 1})

        totals = client.admin.command("top")["totals"]
        devices = {kind: totals["pushline.devices"][kind]["count"] for kind in KINDS}
        assert devices == {
            "queries": 2,
            "getmore": 4,
            "insert": 1,
            "update": 1,
            "remove": 1,
            "commands": 1,
            "total": 10,
        }
        assert totals["other.devices"]["insert"]["count"] == 1
        client.drop_database("other")
        assert "other.devices" not in client.admin.command("top")["totals"]
