"""AMQP 1.0 for FluxMQ: a sans-IO codec and link state machine on the core adapter."""
