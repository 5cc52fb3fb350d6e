"""What the connection modules share: the connection's phases and the spec's error
conditions (sans-IO: no asyncio).

The connection (:mod:`fluxmq_amqp1.connection`) runs through these phases::

    HEADER --SASL header--> SASL --sasl-init--> (AuthWait) --ok--> SASL_DONE
       |                                                            |
       +--AMQP header (no SASL: anonymous login, AuthWait)---+  AMQP header
                                                             v      v
                                                           OPEN_WAIT --open--> OPENED
    OPENED --close (either side)--> CLOSED

Within OPENED, :mod:`fluxmq_amqp1.sessions` handles begin/end and flow,
:mod:`fluxmq_amqp1.links` attach/detach and :mod:`fluxmq_amqp1.delivery` transfers
and dispositions; their state lives in :mod:`fluxmq_amqp1.endpoints`.
"""

from __future__ import annotations

import enum

__all__ = ["Phase"]

PROTOCOL = "amqp1"

# Error conditions (part 2.8.15-2.8.18).
INTERNAL_ERROR = "amqp:internal-error"
NOT_FOUND = "amqp:not-found"
UNAUTHORIZED = "amqp:unauthorized-access"
RESOURCE_LIMIT = "amqp:resource-limit-exceeded"
NOT_ALLOWED = "amqp:not-allowed"
INVALID_FIELD = "amqp:invalid-field"
NOT_IMPLEMENTED = "amqp:not-implemented"
PRECONDITION_FAILED = "amqp:precondition-failed"
CONNECTION_FORCED = "amqp:connection:forced"
WINDOW_VIOLATION = "amqp:session:window-violation"
ERRANT_LINK = "amqp:session:errant-link"
HANDLE_IN_USE = "amqp:session:handle-in-use"
UNATTACHED_HANDLE = "amqp:session:unattached-handle"
TRANSFER_LIMIT = "amqp:link:transfer-limit-exceeded"
MESSAGE_SIZE = "amqp:link:message-size-exceeded"
DETACH_FORCED = "amqp:link:detach-forced"
RESOURCE_DELETED = "amqp:resource-deleted"


class Phase(enum.Enum):
    HEADER = "header"
    SASL = "sasl"
    SASL_AUTH = "sasl-auth"
    SASL_DONE = "sasl-done"
    OPEN_WAIT = "open-wait"
    OPENED = "opened"
    CLOSED = "closed"
