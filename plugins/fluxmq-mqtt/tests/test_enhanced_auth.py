"""MQTT 5 enhanced authentication (AUTH packets) with the core's SCRAM-SHA-256."""

from __future__ import annotations

import pytest
from fluxmq_mqtt.codec import Auth, Connack, Connect, Disconnect, Properties

from fluxmq_core.auth_file import set_password
from fluxmq_core.scram import ScramClient

METHOD = "SCRAM-SHA-256"


@pytest.fixture
def scram_broker(fluxmq_broker_factory, tmp_path):
    pw = tmp_path / "passwd"
    set_password(pw, "carol", "s3cret", scheme="scram-sha-256")
    return fluxmq_broker_factory(plugins=["mqtt"], config={"auth": {"password_file": str(pw)}})


def _login(raw, port, password):
    client = ScramClient("carol", password)
    c = raw(port)
    c.send_packet(
        Connect(
            client_id="scram",
            protocol_level=5,
            properties=Properties(authentication_method=METHOD, authentication_data=client.first()),
        )
    )
    step = c.recv()
    assert isinstance(step, Auth) and step.reason_code == 0x18
    assert step.properties.authentication_method == METHOD
    c.send_packet(
        Auth(
            0x18,
            Properties(
                authentication_method=METHOD,
                authentication_data=client.final(step.properties.authentication_data),
            ),
        )
    )
    return c, client, c.recv()


def test_scram_login_succeeds_and_reauth(scram_broker, raw):
    c, client, ack = _login(raw, scram_broker.port(), "s3cret")
    assert isinstance(ack, Connack) and ack.reason_code == 0
    client.verify(ack.properties.authentication_data)
    # Re-authentication on the live connection.
    again = ScramClient("carol", "s3cret")
    c.send_packet(
        Auth(0x19, Properties(authentication_method=METHOD, authentication_data=again.first()))
    )
    step = c.recv()
    assert step.reason_code == 0x18
    c.send_packet(
        Auth(
            0x18,
            Properties(
                authentication_method=METHOD,
                authentication_data=again.final(step.properties.authentication_data),
            ),
        )
    )
    done = c.recv()
    assert isinstance(done, Auth) and done.reason_code == 0
    again.verify(done.properties.authentication_data)


def test_scram_wrong_password_refused(scram_broker, raw):
    c, _client, ack = _login(raw, scram_broker.port(), "wrong")
    assert isinstance(ack, Connack) and ack.reason_code == 0x87
    assert c.closed()


def test_unknown_method_0x8c(scram_broker, raw):
    c = raw(scram_broker.port())
    c.send_packet(
        Connect(
            client_id="x",
            protocol_level=5,
            properties=Properties(authentication_method="KERBEROS-ISH"),
        )
    )
    ack = c.recv()
    assert ack.reason_code == 0x8C


def test_auth_without_method_is_protocol_error(broker, raw):
    c = raw(broker.port())
    c.send_packet(Connect(client_id="y", protocol_level=5))
    c.recv()
    c.send_packet(Auth(0x19, Properties(authentication_method=METHOD)))
    d = c.recv()
    assert isinstance(d, Disconnect) and d.reason_code == 0x82
