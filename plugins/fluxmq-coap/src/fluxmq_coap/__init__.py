"""FluxMQ CoAP plugin: CoAP over UDP on the shared router."""
