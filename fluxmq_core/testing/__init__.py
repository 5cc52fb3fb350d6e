"""Test kit for FluxMQ and its plugins: real brokers on ephemeral ports, a
subprocess runner, and the storage driver conformance suite."""

from fluxmq_core.testing.broker import BrokerProcess, BrokerThread, ephemeral_overrides

__all__ = ["BrokerProcess", "BrokerThread", "ephemeral_overrides"]
