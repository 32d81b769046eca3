"""One exception hierarchy for ddso.

Every message names the bad value, the rule it broke and what to do about it. The CLI
turns a :class:`UserError` into a one-line message and exit code 2; the HTTP layer turns
it into a 4xx. Anything that is not a ``DdsoError`` is a bug and keeps its traceback.
"""

from __future__ import annotations


class DdsoError(Exception):
    """Base class of every error ddso raises on purpose."""


class UserError(DdsoError):
    """The caller gave bad input (arguments, files, configuration); exit code 2."""


class ConfigError(UserError):
    """A configuration file, key or environment variable is invalid."""


class DataFileError(UserError):
    """A data file is missing, unreadable or corrupt; the message names the file and line."""


class EventParseError(UserError):
    """Bytes that are not a valid event.

    ``reason`` is a short machine-readable code (``bad_json``, ``schema``, ``unknown_type``,
    ``non_finite``, ``oversize``, ``not_object``) used by dead-letter sinks and metrics;
    ``detail`` is the human-readable rule that was broken, naming the field.
    """

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class NotFittedError(DdsoError):
    """A model was used before ``fit`` was called."""


class ServiceError(DdsoError):
    """An external service (Kafka, Redis, Ray) could not be reached or refused a request."""
