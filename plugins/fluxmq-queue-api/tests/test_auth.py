"""Auth on every call: the admin bearer token, Basic credentials through the core
auth service, the queue ACL (append = publish, consume = subscribe), over gRPC and
Connect alike."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from fluxmq_queue_api.client import QueueAPIError, QueueClient
from fluxmq_queue_api.testing import TOKEN, connect_call, grpc_target

from fluxmq_core.auth_file import hash_password
from fluxmq_core.testing.broker import BrokerThread

ACL = """
default = "deny"

[[rule]]
permission = "allow"
action = "publish"
topic = "$queue/orders/#"
users = ["alice"]

[[rule]]
permission = "allow"
action = "subscribe"
topic = "$queue/orders/#"
users = ["bob"]
"""


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerThread]:
    d: Path = tmp_path_factory.mktemp("auth")
    users = d / "passwd"
    users.write_text(
        "".join(f"{u}:{hash_password(u + '-pw', iterations=1000)}\n" for u in ("alice", "bob"))
    )
    acl = d / "acl.toml"
    acl.write_text(ACL)
    with BrokerThread(
        plugins=["queue_api"],
        config={
            "http": {"admin_token": TOKEN},
            "auth": {"anonymous": False, "password_file": str(users), "acl_file": str(acl)},
            "queues": {"orders": {"type": "classic"}},
        },
    ) as b:
        yield b


async def code_of(coro) -> grpc.StatusCode:
    with pytest.raises(QueueAPIError) as info:
        await coro
    return info.value.code


async def test_grpc_authentication(secured: BrokerThread) -> None:
    target = grpc_target(secured)
    async with QueueClient(target) as anon:
        assert await code_of(anon.append("orders", b"x")) == grpc.StatusCode.UNAUTHENTICATED
    async with QueueClient(target, username="alice", password="nope") as bad:
        assert await code_of(bad.append("orders", b"x")) == grpc.StatusCode.UNAUTHENTICATED
    async with QueueClient(target, token="not-the-token") as bad:
        assert await code_of(bad.get_queue("orders")) == grpc.StatusCode.UNAUTHENTICATED


async def test_grpc_acl_publish_and_subscribe(secured: BrokerThread) -> None:
    target = grpc_target(secured)
    async with (
        QueueClient(target, username="alice", password="alice-pw") as alice,
        QueueClient(target, username="bob", password="bob-pw") as bob,
    ):
        r = await alice.append("orders", b"o1", key="eu")
        assert await code_of(alice.consume("orders", "g", "a")) == grpc.StatusCode.PERMISSION_DENIED
        assert await code_of(alice.read("orders", r.offset)) == grpc.StatusCode.PERMISSION_DENIED
        assert await code_of(bob.append("orders", b"x")) == grpc.StatusCode.PERMISSION_DENIED
        got = await bob.consume("orders", "g", "b", max_messages=1, wait=10)
        assert [m.value for m in got] == [b"o1"]
        await bob.ack("orders", "g", "b", [got[0].offset])
        # admin operations need the admin token
        assert await code_of(bob.create_queue("other")) == grpc.StatusCode.PERMISSION_DENIED
        assert await code_of(alice.purge("orders")) == grpc.StatusCode.PERMISSION_DENIED
        # a queue the caller may not read is not listed
        assert [q.name for q in (await alice.list_queues()).queues] == []
        assert [q.name for q in (await bob.list_queues()).queues] == ["orders"]
    async with QueueClient(target, token=TOKEN) as admin:
        assert (await admin.create_queue("other")).name == "other"
        await admin.delete_queue("other")


def test_connect_auth_statuses(secured: BrokerThread) -> None:
    body = {"queueName": "orders", "value": base64.b64encode(b"x").decode()}
    status, _c, data = connect_call(secured, "Append", body, token=None)
    assert status == 401 and json.loads(data)["code"] == "unauthenticated"
    basic = "Basic " + base64.b64encode(b"bob:bob-pw").decode()
    status, _c, data = connect_call(
        secured, "Append", body, token=None, headers={"Authorization": basic}
    )
    assert status == 403 and json.loads(data)["code"] == "permission_denied"
    basic = "Basic " + base64.b64encode(b"alice:alice-pw").decode()
    status, _c, data = connect_call(
        secured, "Append", body, token=None, headers={"Authorization": basic}
    )
    assert status == 200, data
