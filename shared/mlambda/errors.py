"""The platform's errors and their one HTTP mapping: ``{code, message, details}`` with a status.

Services raise these; API handlers get them turned into responses by ``install(app)``; SQS
consumers fail the record that raised. 4xx are logged at info, 5xx once with the traceback and
a generic message to the caller.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
    from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError


class MlambdaError(Exception):
    """Base of every error the platform raises on purpose."""

    status: ClassVar[int] = 500
    default_code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.details = details

    def to_body(self) -> dict[str, Any]:
        """The JSON body every API returns for this error: ``details`` always there (null when none)."""
        return {"code": self.code, "message": self.message, "details": self.details}

    def to_json(self) -> str:
        """``to_body()`` as the response text (details that are not JSON types are written as strings)."""
        return json.dumps(self.to_body(), default=str)


class InvalidInputError(MlambdaError):
    """The request or record is malformed or breaks a rule (400)."""

    status = 400
    default_code = "invalid_input"


class UnprocessableError(InvalidInputError):
    """Well-formed input that does not fit what it is sent to, e.g. a model's signature (422)."""

    status = 422
    default_code = "unprocessable"


class PayloadTooLargeError(InvalidInputError):
    """Body, batch or file over a documented cap (413)."""

    status = 413
    default_code = "payload_too_large"


class UnsupportedMediaTypeError(InvalidInputError):
    """A body in a media type (or content encoding) the route cannot read (415)."""

    status = 415
    default_code = "unsupported_media_type"


class PreconditionRequiredError(InvalidInputError):
    """A write that must name the state it read (``If-Match``) did not (428)."""

    status = 428
    default_code = "precondition_required"


class UnauthorizedError(MlambdaError):
    """No credentials, or credentials we do not know (401)."""

    status = 401
    default_code = "unauthorized"


class ForbiddenError(MlambdaError):
    """Known caller without the scope for this action (403)."""

    status = 403
    default_code = "forbidden"


class NotFoundError(MlambdaError):
    """The named thing does not exist (404)."""

    status = 404
    default_code = "not_found"


class ConflictError(MlambdaError):
    """The write lost a race or contradicts the current state (409)."""

    status = 409
    default_code = "conflict"


class UpstreamError(MlambdaError):
    """A dependency (AWS, a model runtime) failed; retrying may help (502)."""

    status = 502
    default_code = "upstream_error"


def error_response(error: MlambdaError) -> Response[str]:
    """A powertools Response for ``error``."""
    from aws_lambda_powertools.event_handler import Response

    return Response(
        status_code=error.status,
        content_type="application/json",
        body=error.to_json(),
    )


def caller_error(exc: Exception) -> MlambdaError:
    """What the caller is told about ``exc``, logged once: the one mapping every API uses.

    4xx keep their message and details and are logged at info; 5xx and unexpected
    exceptions are logged with the traceback and answered with a generic message.
    """
    from aws_lambda_powertools.event_handler.exceptions import BadRequestError
    from aws_lambda_powertools.event_handler.openapi.exceptions import (
        RequestUnsupportedContentType,
        RequestValidationError,
    )

    from mlambda.observability import logger

    error: MlambdaError
    if isinstance(exc, RequestUnsupportedContentType):  # a NotImplementedError: else a 500
        error = UnsupportedMediaTypeError(
            "send the body as application/json",
            details=[{"field": "Content-Type", "message": "accepted: application/json"}],
        )
    elif isinstance(exc, RequestValidationError):
        error = _validation_error(exc)
    elif isinstance(exc, json.JSONDecodeError):
        error = InvalidInputError(f"body is not valid JSON: {exc.msg}", code="malformed_json")
    elif isinstance(exc, BadRequestError):
        error = InvalidInputError(str(exc.msg))
    elif isinstance(exc, MlambdaError):
        error = exc
    else:
        logger.exception("unexpected error")
        return MlambdaError("The service failed; try again later.")
    if error.status >= 500:
        logger.exception("request failed", extra={"code": error.code})
        return type(error)("The service failed; try again later.", code=error.code)
    logger.info("request rejected", extra={"code": error.code, "reason": error.message})
    return error


def _validation_error(exc: RequestValidationError) -> InvalidInputError:
    errors = exc.errors()
    if any(err.get("type") == "json_invalid" for err in errors):
        return InvalidInputError("body is not valid JSON", code="malformed_json")
    problems = [
        {"field": ".".join(str(part) for part in err.get("loc", ())), "message": err.get("msg", "")}
        for err in errors
    ]
    first = problems[0] if problems else {"field": "", "message": "invalid request"}
    return UnprocessableError(
        f"{first['field'] or 'body'}: {first['message']}", code="validation_error", details=problems
    )


def install(app: APIGatewayRestResolver) -> None:
    """Map every error an API function can raise to ``{code, message, details}`` (``caller_error``)."""

    @app.exception_handler(Exception)
    def _any_error(exc: Exception) -> Response[str]:
        return error_response(caller_error(exc))

    @app.not_found
    def _not_found(_exc: Exception) -> Response[str]:
        event = app.current_event
        return error_response(
            NotFoundError(f"no route for {event.http_method} {event.path}", code="no_route")
        )
