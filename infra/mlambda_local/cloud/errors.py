"""Errors of the local cloud: all derive from ``MlambdaLocalError`` so the CLI can catch one type."""

from __future__ import annotations

from typing import Any


class MlambdaLocalError(Exception):
    """Base of every error the local cloud raises on purpose."""


class TemplateError(MlambdaLocalError):
    """The template (or a function it names) cannot run locally; the message names the culprit."""


class FunctionInvocationError(MlambdaLocalError):
    """A function raised, timed out or died: what Lambda's Invoke reports as a function error.

    ``error_type`` and ``error_message`` are the runtime's ``errorType`` / ``errorMessage``
    (``Sandbox.Timedout``, ``Runtime.OutOfMemory``, the handler's exception class...), and
    ``payload`` the whole error document. In process the original exception is also chained.
    """

    def __init__(
        self,
        function: str,
        message: str,
        *,
        error_type: str = "Unhandled",
        error_message: str | None = None,
        payload: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{function}: {message}")
        self.function = function
        self.error_type = error_type
        self.error_message = message if error_message is None else error_message
        self.payload = payload or {"errorType": error_type, "errorMessage": self.error_message}


class UnknownTargetError(MlambdaLocalError):
    """``invoke``/``trigger`` was given a name that is neither a function nor a rule."""
