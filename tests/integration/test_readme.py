"""The README's examples, run as pasted: every fenced `sh` block, in order, in one bash
shell, against the four services started by `make run`'s script; and its JSON send request
published straight on Kafka.

The stack gets free ports and a HOME of its own, so the README's `~/.local/state/pushline`
is this test's state directory; only the ingest's `127.0.0.1:8080` and its admin listener's
`127.0.0.1:8081` are rewritten. A block
that cannot run here (`make run` itself, external clusters) is marked by the comment
`<!-- readme-test: not run (why) -->` on the line before its fence.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.core import topics
from services.core.settings import Settings
from services.core.store.client import Document
from tests.integration import processes
from tests.integration.kafka_io import eventually, publish_raw
from tests.stack import ROOT

pytestmark = pytest.mark.integration

README = ROOT / "README.md"
SERVICES_SCRIPT = ROOT / "deploy/local/services.sh"
NOT_RUN = re.compile(r"<!-- readme-test: not run \((?P<why>[^)]+)\) -->")
FENCE = re.compile(r"```(?P<info>\S*)")
LINK = re.compile(r"\]\(([^)\s]+)\)")
# Where the README's ingest listens after a plain `make run`.
README_INGEST = "127.0.0.1:8080"
README_ADMIN = "127.0.0.1:8081"
BLOCK_MARK = ">>> README.md line "


@dataclass(frozen=True)
class Block:
    """One fenced block of the README."""

    line: int  # of the opening fence, 1-based
    info: str
    text: str
    not_run: str | None  # why, when marked


def fenced_blocks(markdown: str) -> list[Block]:
    """Every fenced block of `markdown`, in order."""
    lines = markdown.splitlines()
    blocks = []
    index = 0
    while index < len(lines):
        opening = FENCE.fullmatch(lines[index])
        if opening is None:
            index += 1
            continue
        closing = lines.index("```", index + 1)
        marker = NOT_RUN.fullmatch(lines[index - 1]) if index else None
        blocks.append(
            Block(
                line=index + 1,
                info=opening["info"],
                text="\n".join(lines[index + 1 : closing]) + "\n",
                not_run=marker["why"] if marker else None,
            )
        )
        index = closing + 1
    return blocks


def test_only_a_few_shell_blocks_are_not_run_and_each_says_why() -> None:
    markdown = README.read_text()
    blocks = fenced_blocks(markdown)
    shell = [b for b in blocks if b.info == "sh"]
    assert len([b for b in shell if b.not_run is None]) >= 8
    assert [b.line for b in shell if b.not_run is not None] == [
        b.line for b in blocks if b.not_run is not None
    ], "a not-run marker stands before a block that is not sh"
    assert len([b for b in shell if b.not_run]) <= 2
    assert len(NOT_RUN.findall(markdown)) == len([b for b in blocks if b.not_run])


def test_every_admin_example_calls_the_admin_listener() -> None:
    shell = "\n".join(b.text for b in fenced_blocks(README.read_text()) if b.info == "sh")
    calls = re.findall(r"curl [^\n]*?(\S*)/admin/v1", shell)
    assert calls
    assert set(calls) == {"$ADMIN_API"}
    assert f"export ADMIN_API=http://{README_ADMIN}" in shell
    assert f"{README_INGEST}/admin" not in README.read_text()


def _on_this_stack(script: str, ingest: int, admin: int) -> str:
    """The script with the README's addresses replaced by this stack's."""
    return script.replace(README_INGEST, f"127.0.0.1:{ingest}").replace(
        README_ADMIN, f"127.0.0.1:{admin}"
    )


@pytest.mark.parametrize("document", ["README.md", "ARCHITECTURE.md"])
def test_relative_links_point_at_what_the_repository_has(document: str) -> None:
    for target in LINK.findall((ROOT / document).read_text()):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = ROOT / path if path else ROOT / document
        assert linked.exists(), f"{document} links to {target}, which does not exist"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", linked.read_text(), flags=re.MULTILINE)
            assert anchor in {_anchor(h) for h in headings}, f"{document}: no heading {target}"


def _anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def test_readme_examples_run_as_pasted_after_make_run(
    child_env: dict[str, str],
    settings: Settings,
    db: AsyncDatabase[Document],
    tmp_path: Path,
) -> None:
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    # The examples run in the repository's directory: they call .venv/bin/pushline and
    # write their example files (webpush.json, ...) there.
    (work / ".venv").symlink_to(ROOT / ".venv")
    ingest, admin = processes.free_port(), processes.free_port()
    env = {
        **child_env,
        "HOME": str(home),
        "PUSHLINE_INGEST_PORT": str(ingest),
        "PUSHLINE_ADMIN_PORT": str(admin),
        **{
            f"{name}_PORT": str(processes.free_port())
            for name in ("RESOLVER", "SENDER", "FEEDBACK")
        },
        **{
            f"PUSHLINE_EMULATOR_{name}_PORT": str(processes.free_port())
            for name in ("FCM", "APNS", "WEBPUSH")
        },
    }
    blocks = fenced_blocks(README.read_text())
    runnable = [b for b in blocks if b.info == "sh" and b.not_run is None]
    script = [
        "set -euo pipefail",
        # Every call of the examples must succeed: a 4xx or 5xx answer fails the script.
        # Each answer ends its line, as a terminal would show it.
        'curl() { command curl --fail-with-body --show-error --write-out "\\n" "$@"; }',
    ]
    for block in runnable:
        script += [f"echo '{BLOCK_MARK}{block.line}' >&2", block.text]
    script.append("echo '>>> every block ran' >&2")
    try:
        started = subprocess.run(
            [str(SERVICES_SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=300
        )
        assert started.returncode == 0, started.stderr
        ran = subprocess.run(
            ["bash", "-c", _on_this_stack("\n".join(script), ingest, admin)],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        failed_at = ran.stderr.rpartition(BLOCK_MARK)[2].split("\n", 1)[0]
        why = f"README.md line {failed_at} failed:\n{ran.stdout[-3000:]}\n{ran.stderr[-3000:]}"
        assert ran.returncode == 0, why
        assert ran.stderr.endswith(">>> every block ran\n"), why
        # The native send example reached the device registered before it.
        states = [json.loads(line) for line in ran.stdout.splitlines() if '"state":"done"' in line]
        assert states, ran.stdout
        assert states[0]["counters"]["sent"] == 1, states[0]

        api_key = re.search(r"API key \(shown once\): (\S+)", started.stdout)
        assert api_key is not None
        asyncio.run(_send_the_kafka_example(settings, blocks, ingest, api_key.group(1)))
    finally:
        subprocess.run(
            [str(SERVICES_SCRIPT), "stop"], env=env, capture_output=True, timeout=120, check=False
        )


async def _send_the_kafka_example(
    settings: Settings, blocks: list[Block], ingest: int, api_key: str
) -> None:
    """Publish the README's send request on push.send-requests and find it reached the
    demo account's device."""
    examples = [b for b in blocks if b.info == "json" and "notification_id" in b.text]
    (example,) = [b for b in examples if '"type": "cancel"' not in b.text]
    (cancel,) = [b for b in examples if b is not example]
    request = json.loads(example.text)
    await publish_raw(
        settings,
        topics.SEND_REQUESTS,
        request["notification_id"].encode(),
        example.text.encode(),
    )
    url = f"http://127.0.0.1:{ingest}/v1/notifications/{request['notification_id']}"
    last: list[str] = []
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {api_key}"}) as http:

        async def done() -> dict[str, object] | None:
            answer = await http.get(url)
            last[:] = [f"{answer.status_code} {answer.text}"]
            if answer.status_code != 200 or answer.json()["state"] != "done":
                return None
            found: dict[str, object] = answer.json()
            return found

        try:
            notification = await eventually(done, within=60)
        except AssertionError as exc:
            raise AssertionError(f"the README's Kafka example never ended: {last}") from exc
    counters = notification["counters"]
    assert isinstance(counters, dict)
    assert (counters["targeted"], counters["sent"]) == (1, 1), notification
    # The README's cancel names this send, done by now: it stays done.
    assert json.loads(cancel.text)["notification_id"] == request["notification_id"]
    await publish_raw(
        settings, topics.SEND_REQUESTS, request["notification_id"].encode(), cancel.text.encode()
    )
    await asyncio.sleep(2)
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {api_key}"}) as http:
        assert (await http.get(url)).json()["state"] == "done"
