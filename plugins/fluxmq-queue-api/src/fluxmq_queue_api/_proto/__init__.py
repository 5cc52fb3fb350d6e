"""Generated protobuf code for the queue API (do not edit).

Regenerate with ``python plugins/fluxmq-queue-api/proto/generate.py``; the source is
``plugins/fluxmq-queue-api/proto/fluxmq/queue/v1/queue.proto``.
"""
