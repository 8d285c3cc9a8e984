"""Errors of the local cloud: all derive from ``MlambdaLocalError`` so the CLI can catch one type."""

from __future__ import annotations


class MlambdaLocalError(Exception):
    """Base of every error the local cloud raises on purpose."""


class TemplateError(MlambdaLocalError):
    """The template (or a function it names) cannot run locally; the message names the culprit."""


class FunctionInvocationError(MlambdaLocalError):
    """A function raised or timed out; the original exception is chained as ``__cause__``."""

    def __init__(self, function: str, message: str) -> None:
        super().__init__(f"{function}: {message}")
        self.function = function


class UnknownTargetError(MlambdaLocalError):
    """``invoke``/``trigger`` was given a name that is neither a function nor a rule."""
