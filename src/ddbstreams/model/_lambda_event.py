"""parse_lambda_event: the records of an AWS Lambda event from a DynamoDB Streams mapping.

Layer 1, pure, no I/O. Lambda delivers every record with an ``ApproximateCreationDateTime``
in epoch seconds, but the sample events people copy into their tests do not all carry one,
and this function accepts what Lambda users actually feed their tests (issue 12, item 5):

* **No creation time.** Powertools for AWS Lambda's ``tests/events/dynamoStreamEvent.json``
  (repo ``aws-powertools/powertools-lambda-python``; its second record has none, older
  versions none at all), the tumbling-window samples of the Java and .NET libraries
  (``aws/aws-lambda-java-libs``: ``aws-lambda-java-tests/src/test/resources/ddb/
  dynamo_time_window_event.json``; ``aws/aws-lambda-dotnet``: ``Libraries/test/
  EventsTests.Shared/dynamodb-timewindow-event.json``). Such a record gets
  :data:`~ddbstreams.model._types.UNKNOWN_CREATION_TIME` and says so:
  ``record.creation_time_known`` is ``False``.
* **Milliseconds.** ``aws/aws-lambda-dotnet``'s ``Libraries/test/EventsTests.Shared/
  dynamodb-with-ms-event.json`` writes ``1480642020000``; the .NET serializer reads it as
  the same moment as ``1480642020`` (its ``DateTimeConverter`` in ``Libraries/src/
  Amazon.Lambda.Serialization.SystemTextJson/Converters`` takes a number above
  ``YEAR_5000_IN_SECONDS = 157753180800`` as milliseconds). The same rule is used here: as
  seconds such a number would lie past the year 6900, as milliseconds it is after 1974.
* **Text.** The Lambda guide's own sample record ("Using event filtering with a DynamoDB
  event source", https://docs.aws.amazon.com/lambda/latest/dg/with-ddb-filtering.html)
  writes ``"ApproximateCreationDateTime": "1678831218.0"``, a string: a decimal number in
  a string is read as the number.

Everything else a record needs (``eventID``, ``eventName``, ``dynamodb.Keys``,
``SequenceNumber``...) is present in every published sample and still required: a record
without it raises ``ValueError`` naming the field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final, TypeVar, overload

from ddbstreams.model._decode import DefaultParser
from ddbstreams.model._parser import Parser
from ddbstreams.model._types import UNKNOWN_CREATION_TIME, Record

__all__ = ["parse_lambda_event"]

T = TypeVar("T")

_DEFAULT: Final[Parser[Record]] = DefaultParser()
# Above this an epoch number is milliseconds (aws/aws-lambda-dotnet's DateTimeConverter).
_MILLISECONDS_ABOVE: Final = 157_753_180_800
_UNKNOWN_EPOCH: Final = int(UNKNOWN_CREATION_TIME.timestamp())
_DECIMAL_TEXT: Final = re.compile(r"[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?")


def _epoch_seconds(value: Any) -> Any:
    """The creation time of a sample record in epoch seconds; anything unreadable as is.

    What cannot be read is passed on unchanged, so the parser's own check names the field.
    """
    if value is None:
        return _UNKNOWN_EPOCH
    if type(value) is str and _DECIMAL_TEXT.fullmatch(value):
        value = float(value) if not value.isdigit() else int(value)
    if type(value) in (int, float) and value > _MILLISECONDS_ABOVE:
        return value / 1000
    return value


def _repaired(raw: dict[str, Any]) -> dict[str, Any]:
    """``raw`` with a readable creation time: a new dict if one was needed, else ``raw``."""
    ddb = raw["dynamodb"]
    value = ddb.get("ApproximateCreationDateTime")
    seconds = _epoch_seconds(value)
    if seconds is value and "ApproximateCreationDateTime" in ddb:
        return raw
    # Copies: the caller's event is left as it was.
    return {**raw, "dynamodb": {**ddb, "ApproximateCreationDateTime": seconds}}


def _check_records(event: Any) -> list[dict[str, Any]]:
    """The event's ``Records``, each checked to be a DynamoDB Streams record."""
    if not isinstance(event, Mapping):
        raise ValueError(
            f"not a DynamoDB Streams Lambda event: expected a mapping, got {type(event).__name__}"
        )
    raw_records = event.get("Records")
    if not isinstance(raw_records, list):
        raise ValueError(
            "not a DynamoDB Streams Lambda event: no 'Records' array "
            f"(keys: {sorted(map(str, event))[:10]})"
        )
    for index, raw in enumerate(raw_records):
        if not isinstance(raw, dict):
            raise ValueError(
                f"not a DynamoDB Streams Lambda event: Records[{index}] is not an object"
            )
        source = raw.get("eventSource", raw.get("EventSource"))
        if source != "aws:dynamodb":
            hint = (
                " (Kinesis Data Streams for DynamoDB is not supported)"
                if source == "aws:kinesis"
                else ""
            )
            raise ValueError(
                f"not a DynamoDB Streams Lambda event: Records[{index}] has eventSource "
                f"{source!r}, expected 'aws:dynamodb'{hint}"
            )
        if not isinstance(raw.get("dynamodb"), dict):
            raise ValueError(
                f"not a DynamoDB Streams Lambda event: Records[{index}] has no 'dynamodb' object"
            )
    return raw_records


@overload
def parse_lambda_event(event: Mapping[str, Any]) -> list[Record]: ...
@overload
def parse_lambda_event(event: Mapping[str, Any], parser: Parser[T]) -> list[T]: ...
def parse_lambda_event(event: Mapping[str, Any], parser: Parser[Any] | None = None) -> list[Any]:
    """Records of an AWS Lambda event delivered by a DynamoDB Streams event source mapping.

    The event looks like ``{"Records": [{"eventID", "eventName", "eventVersion",
    "eventSource": "aws:dynamodb", "awsRegion", "eventSourceARN", "dynamodb": {...},
    "userIdentity"?}]}``. Records get ``event_source_arn`` from the event, and ``shard_id=""``
    because Lambda does not say which shard a batch came from -- except in tumbling-window
    invocations, whose event carries a top-level ``shardId`` that is then used. ``parser``
    defaults to :class:`DefaultParser`; pass :class:`RawParser` to keep DynamoDB JSON, or
    any :class:`~ddbstreams.model._parser.Parser` of your own.

    Published sample events are accepted as they are (see the module docstring): a record
    without ``ApproximateCreationDateTime`` gets ``UNKNOWN_CREATION_TIME`` and
    ``creation_time_known=False``; one in milliseconds or in a string is read as the moment
    it means. A custom parser receives the records so repaired (epoch ``0`` where the time
    was missing); the event itself is not modified.

    Raises ``ValueError`` saying what is wrong when the event is not a DynamoDB Streams
    event (no ``Records`` array, a record from another source such as SQS or Kinesis, a
    record without its ``dynamodb`` part) or a record is malformed.
    """
    raw_records = [_repaired(raw) for raw in _check_records(event)]
    shard_id = event.get("shardId")
    return (parser or _DEFAULT).parse_records(
        raw_records, shard_id if isinstance(shard_id, str) else ""
    )
