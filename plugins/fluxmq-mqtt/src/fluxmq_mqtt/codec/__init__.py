"""Sans-IO MQTT codec."""
