"""The kit's error hierarchy. Domain errors say what went wrong in domain words;
`stayops_kit.problems` maps each kind to an HTTP status once, for every service.

Each error class declares a `code`: the stable, machine-readable name clients
branch on (the problem's `code` member and its `type`,
`urn:stayops:problem:<code>`). A class that declares none has its kind's.

    StayOpsError
     ├── DomainError               a request the domain refuses
     │    ├── NotFound             404 (also: another org's object)
     │    ├── Conflict             409 (a forbidden state transition, a duplicate)
     │    ├── PermissionDenied     403 (same org, not allowed)
     │    └── InvalidRequest       422 (well-formed but meaningless input)
     ├── Unauthorized              401 (no token, a bad or expired one)
     └── ConsumerError             raised while handling an event
          ├── TransientError       retry with backoff, then dead-letter
          └── PermanentError       dead-letter at once, with the reason
"""

from __future__ import annotations


class StayOpsError(Exception):
    """Base of every error the kit and the services raise on purpose."""


class DomainError(StayOpsError):
    """A request the domain refuses. `title` is a short, stable summary; `code` the
    name a client can branch on (lowercase words joined by hyphens)."""

    title = "Request refused"
    code = "request-refused"


class NotFound(DomainError):
    title = "Not found"
    code = "not-found"


class Conflict(DomainError):
    title = "Conflict"
    code = "conflict"


class PermissionDenied(DomainError):
    title = "Forbidden"
    code = "forbidden"


class InvalidRequest(DomainError):
    title = "Invalid request"
    code = "invalid-request"


class PreconditionFailed(DomainError):
    """The request's precondition (`If-Match`) names a version the object no longer has."""

    title = "Precondition failed"
    code = "precondition-failed"


class Unauthorized(StayOpsError):
    """The caller could not be authenticated; the message says why, without secrets."""

    title = "Unauthorized"
    code = "unauthorized"


class ConsumerError(StayOpsError):
    """An event handler could not apply an event."""


class TransientError(ConsumerError):
    """Worth retrying: the same event may succeed later (a lock, a timeout)."""


class PermanentError(ConsumerError):
    """No retry can help; the event goes to the dead-letter topic with this message."""
