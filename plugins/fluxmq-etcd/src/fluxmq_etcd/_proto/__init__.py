"""Generated protobuf code for the node-to-node protocol (do not edit).

Regenerate with ``python plugins/fluxmq-etcd/proto/generate.py``; the sources are
``plugins/fluxmq-etcd/proto/fluxmq/cluster/v1/*.proto``.
"""
