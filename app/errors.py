"""Typed domain errors with their HTTP status, rendered by one handler as ``{"error", "detail"}``."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, detail: str, *, extra: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra or {}


class NotFound(DomainError):
    status_code = 404
    code = "not_found"


class Conflict(DomainError):
    status_code = 409
    code = "conflict"


class Invalid(DomainError):
    """Well-formed JSON whose content breaks a rule (bbox outside the image, unknown class, ...)."""

    status_code = 422
    code = "invalid"


class TooLarge(DomainError):
    status_code = 413
    code = "too_large"


class Unauthorized(DomainError):
    status_code = 401
    code = "unauthorized"


class Forbidden(DomainError):
    status_code = 403
    code = "forbidden"


class Unavailable(DomainError):
    """A dependency (database, broker) is down; the request changed nothing and may be retried."""

    status_code = 503
    code = "unavailable"


class BadGateway(DomainError):
    """Where the images are kept (object storage, a web server) answered wrongly or not at all."""

    status_code = 502
    code = "bad_gateway"


class GatewayTimeout(DomainError):
    """Where the images are kept did not answer in time."""

    status_code = 504
    code = "gateway_timeout"


class ClientGone(DomainError):
    """The client disconnected before the work began; nothing was done and nobody reads the answer."""

    status_code = 499  # nginx's "client closed request"
    code = "client_closed_request"
