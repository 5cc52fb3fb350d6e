"""The ``[mqtt]`` config section: :class:`MQTTConfig`.

Every key here is read by the session, connection or adapter layer; the help texts
are what ``fluxmq config init`` writes and what ``docs/protocols/mqtt.md`` lists.
Validation happens in ``__post_init__`` and names the key. What this module does not
hold: defaults of other sections (``[auth]`` owns users and ACLs, ``[storage]`` the
durability of sessions) and any behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass

from fluxmq_core.config import setting
from fluxmq_core.transport import ListenerSecurity

__all__ = ["MQTTConfig", "QUEUE_POLICIES"]

QUEUE_POLICIES = ("drop-oldest", "reject")

_U16 = 0xFFFF
_U32 = 0xFFFFFFFF


@dataclass
class MQTTConfig(ListenerSecurity):
    """[mqtt]: MQTT 3.1, 3.1.1 and 5.0 over TCP, TLS and WebSocket."""

    tcp: str = setting("0.0.0.0:1883", "MQTT over TCP listener; empty disables it.", listener=True)
    tls: str = setting(
        "0.0.0.0:8883", "MQTT over TLS listener; only bound when tls_cert is set.", listener=True
    )
    websocket: str = setting(
        "0.0.0.0:8083", "MQTT over WebSocket listener; empty disables it.", listener=True
    )
    wss: str = setting(
        "0.0.0.0:8084",
        "MQTT over secure WebSocket (TLS) listener; only bound when tls_cert is set.",
        listener=True,
    )
    websocket_path: str = setting("/mqtt", "HTTP path of the WebSocket endpoint.")
    websocket_origins: list[str] = setting(
        help="Origin header values allowed to connect over WebSocket "
        "(e.g. 'https://app.example.com'); empty = any.",
        factory=list,
    )
    connect_timeout: float = setting(
        10.0, "Seconds a new connection may take to send CONNECT and finish logging in."
    )
    max_packet_size: int = setting(
        1024 * 1024,
        "Largest packet accepted from a client in bytes (advertised in CONNACK); "
        "bigger ones end the connection (5.0: DISCONNECT 0x95).",
    )
    receive_maximum: int = setting(
        1024,
        "QoS 1/2 PUBLISHes a client may have unacknowledged towards us (advertised in "
        "CONNACK); exceeding it ends the connection with 0x93.",
    )
    max_inflight: int = setting(
        64,
        "QoS 1/2 messages we send a client before waiting for acks; the client's own "
        "Receive Maximum lowers it.",
    )
    max_queued_messages: int = setting(
        1000, "QoS 1/2 messages held per session while offline or while its window is full."
    )
    queue_policy: str = setting(
        "drop-oldest",
        "When a session's queue is full: 'drop-oldest' makes room, 'reject' drops the new one.",
    )
    disconnect_slow_clients: bool = setting(
        False,
        "Disconnect a connected client whose session queue overflows (5.0: DISCONNECT "
        "0x97 Quota exceeded) instead of only dropping messages; its session stays.",
    )
    connection_rate: float = setting(
        0.0,
        "CONNECTs accepted per second from one remote IP address (token bucket); over "
        "it: 5.0 CONNACK 0x9F, 3.x closed. 0 = no limit.",
    )
    connection_burst: int = setting(
        10, "CONNECTs one IP address may make at once before connection_rate applies."
    )
    publish_rate: float = setting(
        0.0,
        "PUBLISHes accepted per second from one connection (token bucket); over it: "
        "5.0 PUBACK/PUBREC 0x97 or, for QoS 0, DISCONNECT 0x97; 3.x dropped. 0 = no limit.",
    )
    publish_burst: int = setting(
        100, "PUBLISHes one connection may send at once before publish_rate applies."
    )
    outbound_buffer: int = setting(
        1024 * 1024,
        "Bytes buffered per connection before it counts as slow: past it QoS 0 is dropped "
        "(and counted) and QoS 1/2 waits in the session queue.",
    )
    flow_control_timeout: float = setting(
        1.0,
        "Publisher flow control: an MQTT publisher whose messages meet a congested "
        "connected subscriber (transport paused, or session queue at half of "
        "max_queued_messages) stops being read until that subscriber drains, for at most "
        "this many seconds; then the subscriber is treated as slow (drops as "
        "outbound_buffer and queue_policy say) until it recovers. 0 = off (always drop).",
    )
    max_keepalive: int = setting(
        0,
        "Largest keep alive in seconds; 0 = no limit. 5.0 clients asking for more (or 0) "
        "get it as Server Keep Alive; 3.x clients asking for more (or 0) are refused.",
    )
    max_qos: int = setting(2, "Highest QoS accepted and granted (0, 1 or 2).")
    retain_available: bool = setting(True, "Accept retained messages.")
    wildcard_subscriptions: bool = setting(True, "Accept subscriptions with + and #.")
    shared_subscriptions: bool = setting(True, "Accept $share/<group>/<filter> subscriptions.")
    subscription_identifiers: bool = setting(True, "Accept MQTT 5 subscription identifiers.")
    topic_alias_maximum: int = setting(
        64, "Topic aliases a 5.0 client may use towards us (advertised); 0 = none."
    )
    max_session_expiry: int = setting(
        0xFFFFFFFF, "Cap in seconds on the 5.0 Session Expiry Interval a client asks for."
    )
    persistent_session_expiry: int = setting(
        0,
        "Seconds a 3.1.1 clean-session=false session outlives its connection; 0 = never expires.",
    )
    allow_zero_length_clientid: bool = setting(
        True,
        "Assign an id to clients sending an empty one (5.0; 3.1.1 only with clean session).",
    )
    max_client_id_length: int = setting(256, "Longest client id accepted (bytes of UTF-8).")
    server_reference: str = setting(
        "",
        "When set, every 5.0 CONNECT is refused with 0x9C Use another server and this "
        "Server Reference (3.x clients get 'server unavailable'); empty = none.",
    )
    response_information: str = setting(
        "",
        "Prefix returned as Response Information to 5.0 clients that request it "
        "(followed by the client id); empty = never returned.",
    )

    def __post_init__(self) -> None:
        self.check_listener_security("mqtt")

        def check(ok: bool, key: str, what: str) -> None:
            if not ok:
                raise ValueError(f"mqtt.{key} {what}; got {getattr(self, key)!r}")

        check(self.connect_timeout > 0, "connect_timeout", "must be > 0")
        check(
            64 <= self.max_packet_size <= 268_435_460,
            "max_packet_size",
            "must be between 64 and 268435460",
        )
        check(1 <= self.receive_maximum <= _U16, "receive_maximum", "must be 1..65535")
        check(1 <= self.max_inflight <= _U16, "max_inflight", "must be 1..65535")
        check(self.max_queued_messages >= 0, "max_queued_messages", "must be >= 0")
        check(
            self.queue_policy in QUEUE_POLICIES,
            "queue_policy",
            f"must be one of {', '.join(QUEUE_POLICIES)}",
        )
        check(self.outbound_buffer >= 1024, "outbound_buffer", "must be >= 1024")
        check(self.flow_control_timeout >= 0, "flow_control_timeout", "must be >= 0")
        check(self.connection_rate >= 0, "connection_rate", "must be >= 0")
        check(self.connection_burst >= 1, "connection_burst", "must be >= 1")
        check(self.publish_rate >= 0, "publish_rate", "must be >= 0")
        check(self.publish_burst >= 1, "publish_burst", "must be >= 1")
        check(0 <= self.max_keepalive <= _U16, "max_keepalive", "must be 0..65535")
        check(self.max_qos in (0, 1, 2), "max_qos", "must be 0, 1 or 2")
        check(0 <= self.topic_alias_maximum <= _U16, "topic_alias_maximum", "must be 0..65535")
        check(0 <= self.max_session_expiry <= _U32, "max_session_expiry", "must be 0..4294967295")
        check(
            0 <= self.persistent_session_expiry <= _U32,
            "persistent_session_expiry",
            "must be 0..4294967295",
        )
        check(1 <= self.max_client_id_length <= _U16, "max_client_id_length", "must be 1..65535")
        check(self.websocket_path.startswith("/"), "websocket_path", "must start with '/'")
