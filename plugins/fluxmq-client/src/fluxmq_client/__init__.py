"""FluxMQ's asyncio MQTT client, built on the broker's own sans-IO codec."""

from fluxmq_core.mqtt_codec import MQTT_3_1_1, MQTT_5, Properties

from .client import Client, Message, QueueMessage, Subscription, Will, client_from_options
from .errors import (
    ConnectError,
    ConnectionLost,
    InvalidTopic,
    InvalidURL,
    MQTTClientError,
    PublishError,
    SubscribeError,
)
from .transport import parse_url

__all__ = [
    "MQTT_3_1_1",
    "MQTT_5",
    "Client",
    "ConnectError",
    "ConnectionLost",
    "InvalidTopic",
    "InvalidURL",
    "MQTTClientError",
    "Message",
    "Properties",
    "PublishError",
    "QueueMessage",
    "SubscribeError",
    "Subscription",
    "Will",
    "client_from_options",
    "parse_url",
]
