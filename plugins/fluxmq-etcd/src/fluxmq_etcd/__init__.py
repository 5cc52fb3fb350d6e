"""FluxMQ cluster driver: membership, ownership and the subscription index in etcd;
messages between nodes over gRPC."""
