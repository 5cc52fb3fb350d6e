"""Sans-IO MQTT codec: bytes in, packets out; packets in, bytes out.

Covers MQTT 3.1 (protocol level 3), 3.1.1 (4) and 5.0 (5). No sockets, no clock, no
asyncio: the session and server layers drive it. Modules:

- `packets`     the packet dataclasses and protocol level constants
- `properties`  the MQTT 5 `Properties` class and property block codec
- `reasons`     reason codes and which packet may carry which
- `decoder`     the stream `Decoder` (hot path: `Decoder.packets(chunk)`)
- `bodies`      per-packet body decoders used by the `Decoder`
- `encoder`     `encode()`, `encode_publish()`, `PublishTemplate`, size helpers
- `primitives`  MQTT data representations (integers, strings, binary)
- `errors`      `MQTTProtocolError` (peer's fault) and `MQTTEncodeError` (ours)
"""

from .decoder import (
    CLIENT,
    DEFAULT_MAX_BUFFER_SIZE,
    MAX_PACKET_SIZE,
    SERVER,
    Decoder,
    decode_packet,
)
from .encoder import (
    PublishTemplate,
    encode,
    encode_publish,
    encoded_size,
    publish_size,
    publish_with_packet_id,
)
from .errors import MQTTEncodeError, MQTTProtocolError
from .packets import (
    MQTT_3_1,
    MQTT_3_1_1,
    MQTT_5,
    VERSIONS,
    Auth,
    Connack,
    Connect,
    Disconnect,
    Packet,
    PacketType,
    Pingreq,
    Pingresp,
    Puback,
    Pubcomp,
    Publish,
    PublishRun,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    SubscribeOptions,
    Unsuback,
    Unsubscribe,
    validate_topic_filter,
    validate_topic_name,
)
from .properties import Properties
from .reasons import ConnackReturnCode, ReasonCode, connack_return_code_v3, suback_return_code_v3

__all__ = [
    "CLIENT",
    "DEFAULT_MAX_BUFFER_SIZE",
    "MAX_PACKET_SIZE",
    "MQTT_3_1",
    "MQTT_3_1_1",
    "MQTT_5",
    "SERVER",
    "VERSIONS",
    "Auth",
    "Connack",
    "ConnackReturnCode",
    "Connect",
    "Decoder",
    "Disconnect",
    "MQTTEncodeError",
    "MQTTProtocolError",
    "Packet",
    "PacketType",
    "Pingreq",
    "Pingresp",
    "Properties",
    "Puback",
    "Pubcomp",
    "Publish",
    "PublishRun",
    "PublishTemplate",
    "Pubrec",
    "Pubrel",
    "ReasonCode",
    "Suback",
    "Subscribe",
    "SubscribeOptions",
    "Unsuback",
    "Unsubscribe",
    "connack_return_code_v3",
    "decode_packet",
    "encode",
    "encode_publish",
    "encoded_size",
    "publish_size",
    "publish_with_packet_id",
    "suback_return_code_v3",
    "validate_topic_filter",
    "validate_topic_name",
]
