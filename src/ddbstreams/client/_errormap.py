"""The one place where AWS error codes become ddbstreams exceptions.

:func:`map_transport_error` turns a :class:`~ddbstreams.transport._seam.TransportError` into the
library's exception for the operation and the resource it was about (a
:class:`CallTarget`). Most codes map through a table of exception class and message
template; "not found" and validation errors depend on what the call was about, and an
access-denied error names the IAM action to grant (``dynamodb:<Operation>``) and the
resource to grant it on (:func:`access_denied_error`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ddbstreams._errors import (
    AccessDeniedError,
    ConditionFailedError,
    CredentialsError,
    DDBStreamsError,
    EndpointConnectionError,
    ExpiredIteratorError,
    InvalidPositionError,
    ServiceError,
    ShardNotFoundError,
    StreamNotFoundError,
    TableNotFoundError,
    ThrottledError,
    TrimmedDataError,
    UnexpectedResponseError,
    ValidationError,
)
from ddbstreams.client._backoff import CONNECTION_CODES, CREDENTIALS_CODES, THROTTLING_CODES
from ddbstreams.model._position import ShardStart
from ddbstreams.transport._seam import TransportError

__all__ = [
    "CallTarget",
    "access_denied_error",
    "iam_action",
    "iam_resource",
    "malformed_response_error",
    "map_transport_error",
]

_VALIDATION_CODES: Final = frozenset(
    {
        "ValidationException",
        "ParamValidationError",
        "InvalidArgumentException",
        "InvalidParameterValueException",
        "SerializationException",
    }
)
_ACCESS_DENIED_CODES: Final = frozenset({"AccessDeniedException", "AccessDenied"})

_CREDENTIALS_HELP: Final = (
    "pass aws_access_key_id and aws_secret_access_key, set the AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY environment variables, or configure a profile (AWS_PROFILE, "
    "~/.aws/credentials); DynamoDB Local accepts any non-empty keys"
)

_Rule = tuple[type[DDBStreamsError], str]

# Message templates may use {operation}, {what} (the target), {detail} ("(code: message)"),
# {message} (the AWS message alone), {tries} ("after N attempts"), {where} (the endpoint)
# and {help} (how to configure credentials).
_BY_CODE: Final[dict[str, _Rule]] = {
    "ConditionalCheckFailedException": (
        ConditionFailedError,
        "{operation} on {what}: the condition did not hold {detail}",
    ),
    "ExpiredIteratorException": (
        ExpiredIteratorError,
        "the shard iterator of {what} expired (iterators last 15 minutes) {detail}",
    ),
    "TrimmedDataAccessException": (
        TrimmedDataError,
        "records requested from {what} are older than the stream's 24-hour retention "
        "and were trimmed {detail}",
    ),
    "NoCredentials": (CredentialsError, "no usable AWS credentials found {detail}: {help}"),
    "CredentialsTimeout": (CredentialsError, "no AWS credentials: {message}"),
    "ResponseParserError": (
        UnexpectedResponseError,
        "unexpected response to {operation} for {what} from {where}, which may not be "
        "DynamoDB: {message}",
    ),
    "Timeout": (EndpointConnectionError, "no response from {where} {tries} {detail}"),
}
# Consulted in order after _BY_CODE (the groups do not overlap).
_BY_GROUP: Final[tuple[tuple[frozenset[str], _Rule], ...]] = (
    (
        _VALIDATION_CODES,
        (ValidationError, "{operation} for {what} was rejected as invalid {detail}"),
    ),
    (
        CREDENTIALS_CODES,
        (
            CredentialsError,
            "the service rejected the AWS credentials when calling {operation} {detail}: "
            "check the access key, secret key and session token, or {help}",
        ),
    ),
    (
        THROTTLING_CODES,
        (ThrottledError, "{operation} on {what} was still throttled {tries} {detail}"),
    ),
    (CONNECTION_CODES, (EndpointConnectionError, "cannot connect to {where} {tries} {detail}")),
)
_FALLBACK: Final[_Rule] = (ServiceError, "{operation} on {what} failed {tries} {detail}")


@dataclass(frozen=True, slots=True)
class CallTarget:
    """What a call was about, for error messages (and for region adoption)."""

    stream_arn: str | None = None
    shard_id: str | None = None
    table_name: str | None = None
    start: ShardStart | None = None

    def describe(self) -> str:
        where = self._where()
        start = self.start
        if start is not None and start.sequence_number is not None:
            return f"{where} at {start.iterator_type} {start.sequence_number}"
        return where

    def _where(self) -> str:
        if self.table_name is not None:
            return f"table {self.table_name!r}"
        if self.shard_id is not None and self.stream_arn is not None:
            return f"shard {self.shard_id} of stream {self.stream_arn}"
        if self.shard_id is not None:
            return f"shard {self.shard_id}"
        if self.stream_arn is not None:
            return f"stream {self.stream_arn}"
        return "the service"


def map_transport_error(
    operation: str,
    error: TransportError,
    target: CallTarget,
    *,
    endpoint: str | None = None,
    attempts: int = 1,
) -> DDBStreamsError:
    """The library exception for ``error`` raised by ``operation`` about ``target``.

    The single place where AWS error codes become ddbstreams exceptions. Messages name the
    resource (table, stream ARN, shard id) and end with the AWS code and message.
    ``attempts`` is how many attempts were made (retryable codes reach here only once the
    retries are spent). A "not found" about a target that names a table (a state table, or
    the source table of DescribeTable and ListStreams) is :class:`TableNotFoundError`.
    """
    code = error.code
    detail = f"({code}: {error.message})"
    what = target.describe()
    if code == "ResourceNotFoundException":
        return _not_found(error, target, detail)
    if code in _ACCESS_DENIED_CODES:
        return access_denied_error(operation, target, detail)
    start = target.start
    if (
        code in _VALIDATION_CODES
        and operation == "GetShardIterator"
        and start is not None
        and start.sequence_number is not None
    ):
        return InvalidPositionError(f"{what}: not a valid position {detail}")
    rule = _BY_CODE.get(code) or next(
        (rule for codes, rule in _BY_GROUP if code in codes), _FALLBACK
    )
    exception_class, template = rule
    return exception_class(
        template.format(
            operation=operation,
            what=what,
            detail=detail,
            message=error.message,
            tries=f"after {attempts} attempt{'s' if attempts != 1 else ''}",
            where=endpoint if endpoint is not None else "the endpoint",
            help=_CREDENTIALS_HELP,
        )
    )


def iam_action(operation: str) -> str:
    """The IAM action that allows ``operation``: ``dynamodb:GetRecords`` for GetRecords.

    Every operation this library calls (the streams operations as well as those on state
    tables) is authorised by an action of the ``dynamodb`` service named after it.
    """
    return f"dynamodb:{operation}"


def iam_resource(target: CallTarget) -> str | None:
    """The resource a policy must name for a call about ``target``, as far as it is known.

    A stream's ARN is its resource. A table is known here by its name only, so the ARN is
    shown with its region and account left as placeholders. GetRecords is made with a shard
    iterator, so only its shard is known: the resource is that shard's stream. None when
    the call is about no resource (ListStreams of every table: ``*``).
    """
    if target.table_name is not None:
        return f"arn:aws:dynamodb:REGION:ACCOUNT:table/{target.table_name}"
    if target.stream_arn is not None:
        return target.stream_arn
    if target.shard_id is not None:
        return f"the ARN of the stream of shard {target.shard_id}"
    return None


def access_denied_error(operation: str, target: CallTarget, detail: str) -> AccessDeniedError:
    """The error for a call the credentials may not make, naming the IAM action to grant
    and the resource to grant it on, so the fix can be read off the message."""
    action = iam_action(operation)
    resource = iam_resource(target)
    on = f" on {resource}" if resource is not None else " (resource *)"
    return AccessDeniedError(
        f"access denied: {operation} on {target.describe()} {detail}; the credentials in use "
        f"need the IAM permission {action}{on}"
    )


def _not_found(error: TransportError, target: CallTarget, detail: str) -> DDBStreamsError:
    if target.table_name is not None:
        return TableNotFoundError(f"table {target.table_name!r} not found {detail}")
    what = target.describe()
    if target.shard_id is not None and "shard" in error.message.lower():
        return ShardNotFoundError(f"{what} not found; it may have been trimmed {detail}")
    if target.stream_arn is not None:
        return StreamNotFoundError(f"stream not found: {target.stream_arn} {detail}")
    return StreamNotFoundError(f"the stream of {what} was not found {detail}")


def malformed_response_error(
    operation: str, target: CallTarget, exc: Exception, *, endpoint: str | None
) -> DDBStreamsError:
    """The error for a response the transport parsed but whose content is unusable."""
    if isinstance(exc, KeyError):
        problem = f"it has no {exc.args[0]!r}" if exc.args else "a member is missing"
    else:
        problem = f"a member has the wrong type ({exc})"
    return map_transport_error(
        operation,
        TransportError("ResponseParserError", problem, 200),
        target,
        endpoint=endpoint,
    )
