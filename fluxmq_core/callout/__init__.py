"""Callouts to an operator's services: external authentication and authorization
(``[auth_external]``, :mod:`fluxmq_core.callout.plugin`) and blocking hooks
(``[hooks]``, :mod:`fluxmq_core.callout.hooks`), over HTTP JSON or gRPC
(:mod:`fluxmq_core.callout.transport`)."""
