"""FluxMQ MQTT plugin."""
