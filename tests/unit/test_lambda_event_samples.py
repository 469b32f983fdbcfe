"""parse_lambda_event on the shapes of widely copied sample events (issue 12, item 5).

Each event below is written here in the *shape* of a published sample (cited per test), not
copied: what matters is which fields they have and how their creation time is written.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest

import ddbstreams
from ddbstreams.consuming._filter import RecordFilter
from ddbstreams.model._decode import RawParser
from ddbstreams.model._lambda_event import parse_lambda_event
from ddbstreams.model._types import UNKNOWN_CREATION_TIME


def _record(
    event_id: str, name: str, sequence: str, *, view: str = "NEW_AND_OLD_IMAGES", **ddb: Any
) -> dict[str, Any]:
    return {
        "eventID": event_id,
        "eventVersion": "1.0",
        "eventName": name,
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-west-2",
        "eventSourceARN": "stream-ARN",
        "dynamodb": {
            "Keys": {"Id": {"N": "101"}},
            "SequenceNumber": sequence,
            "SizeBytes": 26,
            "StreamViewType": view,
            **ddb,
        },
    }


NEW = {"Message": {"S": "New item!"}, "Id": {"N": "101"}}
CHANGED = {"Message": {"S": "This item has changed"}, "Id": {"N": "101"}}


def test_powertools_stream_event_shape() -> None:
    # aws-powertools/powertools-lambda-python, tests/events/dynamoStreamEvent.json: an INSERT
    # whose time is a float, then a MODIFY with no ApproximateCreationDateTime at all.
    event = {
        "Records": [
            _record("1", "INSERT", "111", NewImage=NEW, ApproximateCreationDateTime=1693997155.0),
            _record("2", "MODIFY", "222", NewImage=CHANGED, OldImage=NEW),
        ]
    }
    before = copy.deepcopy(event)
    insert, modify = parse_lambda_event(event)
    assert event == before  # the caller's event is not repaired in place
    assert insert.approximate_creation_time == datetime.fromtimestamp(1693997155, UTC)
    assert insert.creation_time_known
    assert modify.approximate_creation_time == UNKNOWN_CREATION_TIME
    assert modify.approximate_creation_time.tzinfo is not None
    assert not modify.creation_time_known
    assert modify.new_image == {"Message": "This item has changed", "Id": 101}
    assert modify.sequence_number == "222"


@pytest.mark.parametrize("view", ["NEW_IMAGE", "NEW_AND_OLD_IMAGES"])
def test_tumbling_window_sample_shape(view: str) -> None:
    # aws/aws-lambda-java-libs, aws-lambda-java-tests/src/test/resources/ddb/
    # dynamo_time_window_event.json, and aws/aws-lambda-dotnet, Libraries/test/
    # EventsTests.Shared/dynamodb-timewindow-event.json: no record has a creation time.
    event = {
        "Records": [
            _record("1", "INSERT", "111", view=view, NewImage=NEW),
            _record("3", "REMOVE", "333", OldImage=CHANGED),
        ],
        "window": {"start": "2020-07-30T17:00:00Z", "end": "2020-07-30T17:05:00Z"},
        "state": {"1": "state1"},
        "shardId": "shard123456789",
        "eventSourceARN": "stream-ARN",
        "isFinalInvokeForWindow": False,
        "isWindowTerminatedEarly": False,
    }
    records = parse_lambda_event(event)
    assert [r.shard_id for r in records] == ["shard123456789"] * 2
    assert [r.creation_time_known for r in records] == [False, False]
    assert records[1].old_image == {"Message": "This item has changed", "Id": 101}


def test_dotnet_milliseconds_sample_shape() -> None:
    # aws/aws-lambda-dotnet, Libraries/test/EventsTests.Shared/dynamodb-with-ms-event.json:
    # the INSERT writes 1480642020000 (ms), the TTL REMOVE 1480642020 (s); .NET's test wants
    # one and the same moment for both.
    insert = _record("a", "INSERT", "1405400000000002063282832", NewImage=NEW)
    insert["dynamodb"]["ApproximateCreationDateTime"] = 1480642020000
    remove = _record("b", "REMOVE", "1405400000000002063282832", view="OLD_IMAGE")
    remove["dynamodb"].update(OldImage=CHANGED, ApproximateCreationDateTime=1480642020)
    remove["userIdentity"] = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
    first, second = parse_lambda_event({"Records": [insert, remove]})
    moment = datetime(2016, 12, 2, 1, 27, tzinfo=UTC)
    assert first.approximate_creation_time == moment
    assert second.approximate_creation_time == moment
    assert first.creation_time_known
    assert second.is_ttl_delete


def test_milliseconds_keep_their_fraction() -> None:
    raw = _record("a", "INSERT", "1", NewImage=NEW, ApproximateCreationDateTime=1480642020123)
    (record,) = parse_lambda_event({"Records": [raw]})
    assert record.approximate_creation_time == datetime(2016, 12, 2, 1, 27, 0, 123000, UTC)


def test_lambda_guide_sample_writes_the_time_as_text() -> None:
    # https://docs.aws.amazon.com/lambda/latest/dg/with-ddb-filtering.html, "DynamoDB event":
    # "ApproximateCreationDateTime": "1678831218.0".
    raw = _record("1", "INSERT", "111", NewImage=NEW, ApproximateCreationDateTime="1678831218.0")
    (record,) = parse_lambda_event({"Records": [raw]})
    assert record.approximate_creation_time == datetime.fromtimestamp(1678831218, UTC)


def test_a_null_time_is_missing_and_garbage_still_fails() -> None:
    raw = _record("1", "INSERT", "111", NewImage=NEW, ApproximateCreationDateTime=None)
    (record,) = parse_lambda_event({"Records": [raw]})
    assert not record.creation_time_known
    raw["dynamodb"]["ApproximateCreationDateTime"] = "yesterday"
    with pytest.raises(ValueError, match="ApproximateCreationDateTime has the wrong type"):
        parse_lambda_event({"Records": [raw]})


def test_other_parsers_get_the_repaired_records() -> None:
    raw = _record("2", "MODIFY", "222", NewImage=CHANGED, OldImage=NEW)
    (record,) = parse_lambda_event({"Records": [raw]}, RawParser())
    assert record.new_image == CHANGED
    assert not record.creation_time_known

    class Times:
        def parse_records(self, raw_records: list[dict[str, Any]], shard_id: str) -> list[Any]:
            return [r["dynamodb"]["ApproximateCreationDateTime"] for r in raw_records]

    assert parse_lambda_event({"Records": [raw]}, Times()) == [0]


def test_filters_see_the_missing_time_as_missing() -> None:
    raw = _record("2", "MODIFY", "222", NewImage=CHANGED, OldImage=NEW)
    (record,) = parse_lambda_event({"Records": [raw]})
    missing = RecordFilter.from_patterns(
        [{"dynamodb": {"ApproximateCreationDateTime": [{"exists": False}]}}]
    )
    assert missing.matches(record)
    assert missing.matches_raw(raw)
    recent = RecordFilter.from_patterns(
        [{"dynamodb": {"ApproximateCreationDateTime": [{"numeric": [">=", 0]}]}}]
    )
    assert not recent.matches(record)
    assert not recent.matches_raw(raw)


def test_the_public_api_exports_the_sentinel_and_json_round_trip() -> None:
    assert datetime(1970, 1, 1, tzinfo=UTC) == ddbstreams.UNKNOWN_CREATION_TIME
    raw = _record("2", "MODIFY", "222", NewImage=CHANGED)
    (record,) = ddbstreams.parse_lambda_event(json.loads(json.dumps({"Records": [raw]})))
    assert not record.creation_time_known
