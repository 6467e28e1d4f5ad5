"""The client against a real secure node, started by the tests from the
`mnemo` binary that MNEMO_BIN names."""

import asyncio
import os
import queue
import re
import subprocess
import threading
from pathlib import Path

import pytest

from mnemo_client import (
    AlreadyExists,
    AsyncMnemo,
    InvalidArgument,
    Mnemo,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)

BIN = os.environ.get("MNEMO_BIN", "mnemo")


def _run(*args: str) -> str:
    done = subprocess.run([BIN, *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    """A secure one-node cluster: (https url, certificates directory)."""
    root = tmp_path_factory.mktemp("mnemo")
    certs = root / "certs"
    _run("certs", "create", "--dir", str(certs), "--nodes", "n1")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MNEMO_")}
    proc = subprocess.Popen(
        [BIN, "node", "--id", "n1", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
         "--data-dir", str(root / "data"), "--certs-dir", str(certs)],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env,
    )
    lines: "queue.Queue[str]" = queue.Queue()

    def drain() -> None:
        for line in proc.stderr:
            lines.put(line)

    threading.Thread(target=drain, daemon=True).start()
    url = None
    while url is None:
        # The timeout guards against a node that never starts.
        line = lines.get(timeout=60)
        found = re.search(r"metrics on (https://[^/]+)/metrics", line)
        if found:
            url = found.group(1)
    yield url, certs
    proc.kill()
    proc.wait()


def token(certs: Path, spaces: str, *extra: str) -> str:
    return _run("token", "create", "--certs-dir", str(certs), "--spaces", spaces, *extra).strip()


def operator(node) -> Mnemo:
    url, certs = node
    return Mnemo(url, ca=str(certs / "ca.crt"), cert=(str(certs / "client.crt"), str(certs / "client.key")))


def test_remember_recall_get_forget(node):
    with operator(node) as m:
        r = m.remember("notes", "The standup moved to 10am on Mondays", id="standup", tags=["work"])
        assert (r.id, r.space, r.created) == ("standup", "notes", True)
        again = m.remember("notes", "The standup moved to 10am on Mondays", id="standup", tags=["work"])
        assert again.created is False
        with pytest.raises(AlreadyExists):
            m.remember("notes", "Something else entirely", id="standup")
        m.remember("notes", "I parked the car on level 3 of the garage", id="car", confidence=0.8)

        hits = m.recall("notes", "when is the standup", k=5)
        assert hits.memories[0].id == "standup"
        assert hits.memories[0].score > 0 and hits.served_by == "n1"
        assert [h.id for h in m.recall("notes", "car", tags=["work"], include_unmatched=True).memories] == ["standup"]

        got = m.get("notes", "car")
        assert got.memory is not None and got.memory.confidence == pytest.approx(0.8)
        assert got.memory.written_confidence == pytest.approx(0.8)
        assert m.forget("notes", "car").existed is True
        with pytest.raises(NotFound):
            m.get("notes", "car")


def test_remember_many_answers_each_memory_in_order(node):
    with operator(node) as m:
        results = m.remember_many(
            "batch",
            ["the garage door code changed", {"content": " ", "id": "bad"},
             {"content": "lunch is at noon", "id": "lunch", "tags": ["food"]}],
            ack="quorum",
        )
        assert len(results) == 3
        assert results[0].created is True
        assert isinstance(results[1], InvalidArgument) and "content" in results[1].message
        assert results[1].status == 400
        assert (results[2].id, results[2].created) == ("lunch", True)
        again = m.remember_many("batch", [{"content": "lunch is at noon", "id": "lunch", "tags": ["food"]}])
        assert again[0].created is False
        with pytest.raises(InvalidArgument):
            m.remember_many("batch", [])
        assert m.space("batch").memories == 2


def test_query_list_space_consolidate_status(node):
    with operator(node) as m:
        for i in range(5):
            m.remember("docs", f"how to copy file number {i}", id=f"d{i}")
        m.remember("docs", "How to copy file number 0.", id="d0-again")
        q = m.query(["docs", "nothing-here"], "copy file", k=3)
        assert len(q.memories) == 3 and q.memories[0].space == "docs" and not q.partial
        assert [x["id"] for x in m.memories("docs")] == ["d0", "d0-again", "d1", "d2", "d3", "d4"]
        page = m.list("docs", limit=2)
        assert len(page.memories) == 2 and page.next_cursor == "d0-again"
        info = m.space("docs")
        assert (info.memories, info.primary) == (6, "n1")

        plan = m.consolidate("docs", dry_run=True)
        assert plan.dry_run and [sorted(x["inputs"]) for x in plan.merged] == [["d0", "d0-again"]]
        assert m.space("docs").memories == 6  # a plan changes nothing
        done = m.consolidate("docs")
        assert (done.memories_before, done.memories_after) == (6, 5)
        merged = m.get("docs", "d0")
        assert merged.memory is None and merged.merged_into is not None
        assert {i.id for i in merged.merged_into.merged_from} == {"d0", "d0-again"}

        assert m.status()["node_id"] == "n1"


def test_refusals_raise_typed_errors(node):
    url, certs = node
    with operator(node) as m:
        with pytest.raises(InvalidArgument) as e:
            m.recall("notes", "x", k=0)
        assert e.value.status == 400 and "k" in e.value.message
        with pytest.raises(InvalidArgument):
            m.remember("bad space", "x")
        with pytest.raises(InvalidArgument):
            m.remember("notes", "x", confidence=2.0)

    alice = Mnemo(url, ca=str(certs / "ca.crt"), token=token(certs, "alice-*"))
    assert alice.remember("alice-notes", "mine").created
    with pytest.raises(PermissionDenied) as e:
        alice.recall("bob-notes", "x")
    assert '"bob-notes"' in e.value.message and e.value.status == 403
    with pytest.raises(PermissionDenied):
        alice.status()
    reader = Mnemo(url, ca=str(certs / "ca.crt"), token=token(certs, "alice-*", "--read-only"))
    assert reader.recall("alice-notes", "mine").memories[0].content == "mine"
    with pytest.raises(PermissionDenied):
        reader.remember("alice-notes", "x")
    with pytest.raises(Unauthenticated):
        Mnemo(url, ca=str(certs / "ca.crt")).recall("alice-notes", "x")
    with pytest.raises(Unauthenticated):
        Mnemo(url, ca=str(certs / "ca.crt"), token="mnemo1.forged.x").recall("alice-notes", "x")
    # A token never leaves over plain HTTP.
    with pytest.raises(ValueError):
        Mnemo(url.replace("https://", "http://"), token=token(certs, "alice-*"))


def test_dots_are_names_not_path_steps(node):
    with operator(node) as m:
        m.remember("dots", "a memory called dot", id=".")
        m.remember("dots", "a memory called dot dot", id="..")
        assert m.get("dots", ".").memory.content == "a memory called dot"
        assert m.get("dots", "..").memory.content == "a memory called dot dot"


def test_async_client(node):
    url, certs = node

    async def scenario() -> None:
        async with AsyncMnemo(url, ca=str(certs / "ca.crt"), token=token(certs, "async-*")) as m:
            await asyncio.gather(*(m.remember("async-s", f"fact number {i}", id=f"f{i}") for i in range(8)))
            more = await m.remember_many("async-s", [{"content": f"fact number {i}", "id": f"f{i}"} for i in (8, 9)])
            assert [r.id for r in more] == ["f8", "f9"]
            hits = await m.recall("async-s", "fact", k=20)
            assert sorted(h.id for h in hits.memories) == [f"f{i}" for i in range(10)]
            assert [x["id"] async for x in m.memories("async-s")] == sorted(f"f{i}" for i in range(10))
            with pytest.raises(InvalidArgument):
                await m.consolidate("async-s", threshold=0.0)
            with pytest.raises(PermissionDenied):
                await m.recall("notes", "x")

    asyncio.run(scenario())
