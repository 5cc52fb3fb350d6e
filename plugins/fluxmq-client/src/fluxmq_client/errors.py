"""Client errors: each names what failed, so the CLI can print it without a traceback."""

from __future__ import annotations

from fluxmq_core.mqtt_codec.reasons import reason_name


class MQTTClientError(Exception):
    """Base of every error the client raises."""


class InvalidURL(MQTTClientError, ValueError):
    """A broker URL that cannot be used (unknown scheme, bad port...)."""


class InvalidTopic(MQTTClientError, ValueError):
    """A topic name or filter MQTT does not allow (checked before sending, since the
    broker would close the connection for it)."""


class ConnectError(MQTTClientError):
    """The connection could not be made: refused, unreachable, TLS, or a CONNACK refusal.

    ``reason_code`` is the MQTT 5 reason code of a refusing CONNACK (3.1.1 return codes
    are mapped to their 5.0 equivalents), else None for transport failures.
    """

    def __init__(self, message: str, reason_code: int | None = None) -> None:
        super().__init__(message)
        self.reason_code = reason_code

    @property
    def not_authorized(self) -> bool:
        return self.reason_code in (0x86, 0x87, 0x8C)


class ConnectionLost(MQTTClientError):
    """The connection went away and the client does not reconnect (or was closed)."""


class PublishError(MQTTClientError):
    """The broker answered a QoS 1/2 PUBLISH with a failure reason code."""

    def __init__(self, reason_code: int, reason_string: str | None = None) -> None:
        text = f"publish refused: {reason_name(reason_code)} (0x{reason_code:02X})"
        if reason_string:
            text += f": {reason_string}"
        super().__init__(text)
        self.reason_code = reason_code
        self.reason_string = reason_string


class SubscribeError(MQTTClientError):
    """The broker refused a subscription (SUBACK failure code)."""

    def __init__(self, topic_filter: str, reason_code: int) -> None:
        super().__init__(
            f"subscription to {topic_filter!r} refused: {reason_name(reason_code)} "
            f"(0x{reason_code:02X})"
        )
        self.topic_filter = topic_filter
        self.reason_code = reason_code


def describe_reason(code: int) -> str:
    """``"Not authorized (0x87)"``: the reason code as the CLI prints it."""
    return f"{reason_name(code)} (0x{code:02X})"
