"""parse_lambda_event: AWS Lambda events from a DynamoDB Streams event source mapping."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from ddbstreams.model._decode import RawParser
from ddbstreams.model._lambda_event import parse_lambda_event
from ddbstreams.model._types import Record, UserIdentity

ARN = (
    "arn:aws:dynamodb:eu-central-1:123456789012:table/ExampleTableWithStream/"
    "stream/2015-06-27T00:48:05.899"
)

# The shape Lambda delivers (see "Using AWS Lambda with Amazon DynamoDB", example event):
# lowercase envelope keys, the stream record under "dynamodb" with the GetRecords field
# names, eventSourceARN on every record, and a lowercase userIdentity on TTL deletes.
EVENT: dict[str, Any] = {
    "Records": [
        {
            "eventID": "c4ca4238a0b923820dcc509a6f75849b",
            "eventName": "INSERT",
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": "eu-central-1",
            "dynamodb": {
                "Keys": {"Id": {"N": "101"}},
                "NewImage": {
                    "Message": {"S": "New item!"},
                    "Id": {"N": "101"},
                    "Price": {"N": "12.50"},
                    "Tags": {"SS": ["new", "blue"]},
                    "Blob": {"B": "aGVsbG8="},
                },
                "ApproximateCreationDateTime": 1428537600,
                "SequenceNumber": "4421584500000000017450439091",
                "SizeBytes": 26,
                "StreamViewType": "NEW_AND_OLD_IMAGES",
            },
            "eventSourceARN": ARN,
        },
        {
            "eventID": "c81e728d9d4c2f636f067f89cc14862c",
            "eventName": "MODIFY",
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": "eu-central-1",
            "dynamodb": {
                "Keys": {"Id": {"N": "101"}},
                "NewImage": {"Message": {"S": "This item has changed"}, "Id": {"N": "101"}},
                "OldImage": {"Message": {"S": "New item!"}, "Id": {"N": "101"}},
                "ApproximateCreationDateTime": 1428537600,
                "SequenceNumber": "4421584500000000017450439092",
                "SizeBytes": 59,
                "StreamViewType": "NEW_AND_OLD_IMAGES",
            },
            "eventSourceARN": ARN,
        },
        {
            "eventID": "eccbc87e4b5ce2fe28308fd9f2a7baf3",
            "eventName": "REMOVE",
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": "eu-central-1",
            "dynamodb": {
                "Keys": {"Id": {"N": "101"}},
                "OldImage": {"Message": {"S": "This item has changed"}, "Id": {"N": "101"}},
                "ApproximateCreationDateTime": 1428537601.5,
                "SequenceNumber": "4421584500000000017450439093",
                "SizeBytes": 38,
                "StreamViewType": "NEW_AND_OLD_IMAGES",
            },
            "eventSourceARN": ARN,
            "userIdentity": {"principalId": "dynamodb.amazonaws.com", "type": "Service"},
        },
    ]
}


def _event() -> dict[str, Any]:
    return copy.deepcopy(EVENT)


def test_realistic_event() -> None:
    insert, modify, remove = parse_lambda_event(_event())
    assert insert == Record(
        event_id="c4ca4238a0b923820dcc509a6f75849b",
        event_name="INSERT",
        event_version="1.1",
        event_source="aws:dynamodb",
        aws_region="eu-central-1",
        keys={"Id": 101},
        new_image={
            "Message": "New item!",
            "Id": 101,
            "Price": Decimal("12.50"),
            "Tags": {"new", "blue"},
            "Blob": b"hello",
        },
        old_image=None,
        sequence_number="4421584500000000017450439091",
        size_bytes=26,
        stream_view_type="NEW_AND_OLD_IMAGES",
        approximate_creation_time=datetime(2015, 4, 9, 0, 0, tzinfo=UTC),
        shard_id="",
        user_identity=None,
        event_source_arn=ARN,
    )
    assert modify.event_name == "MODIFY"
    assert modify.new_image == {"Message": "This item has changed", "Id": 101}
    assert modify.old_image == {"Message": "New item!", "Id": 101}
    assert remove.event_name == "REMOVE"
    assert remove.new_image is None
    assert remove.old_image == {"Message": "This item has changed", "Id": 101}
    assert remove.approximate_creation_time == datetime(2015, 4, 9, 0, 0, 1, 500000, UTC)
    for record in (insert, modify, remove):
        assert record.shard_id == ""
        assert record.event_source_arn == ARN


def test_ttl_delete_in_a_lambda_event() -> None:
    remove = parse_lambda_event(_event())[2]
    assert remove.user_identity == UserIdentity("Service", "dynamodb.amazonaws.com")
    assert remove.is_ttl_delete
    assert not parse_lambda_event(_event())[1].is_ttl_delete


def test_raw_parser_keeps_dynamodb_json() -> None:
    event = _event()
    insert, _, _ = parse_lambda_event(event, RawParser())
    assert insert.new_image == EVENT["Records"][0]["dynamodb"]["NewImage"]
    assert insert.keys == {"Id": {"N": "101"}}
    assert insert.event_source_arn == ARN
    assert event == EVENT  # parsing does not modify the event


def test_custom_parser_gets_the_raw_records() -> None:
    class EventIds:
        def parse_records(self, raw_records: list[dict[str, Any]], shard_id: str) -> list[str]:
            assert shard_id == ""
            return [raw["eventID"] for raw in raw_records]

    ids: list[str] = parse_lambda_event(_event(), EventIds())
    assert ids == [raw["eventID"] for raw in EVENT["Records"]]


def test_tumbling_window_event_names_its_shard() -> None:
    event = _event()
    event.update(
        window={"start": "2020-07-30T17:00:00Z", "end": "2020-07-30T17:05:00Z"},
        state={"1": "state1"},
        shardId="shardId-00000001600000000000-0123abcd",
        eventSourceARN=ARN,
        isFinalInvokeForWindow=False,
        isWindowTerminatedEarly=False,
    )
    records = parse_lambda_event(event)
    assert [r.shard_id for r in records] == ["shardId-00000001600000000000-0123abcd"] * 3
    assert records[0].keys == {"Id": 101}


def test_empty_records() -> None:
    assert parse_lambda_event({"Records": []}) == []


def test_keys_only_event() -> None:
    event = _event()
    for raw in event["Records"]:
        raw["dynamodb"].pop("NewImage", None)
        raw["dynamodb"].pop("OldImage", None)
        raw["dynamodb"]["StreamViewType"] = "KEYS_ONLY"
    records = parse_lambda_event(event)
    assert [(r.keys, r.new_image, r.old_image) for r in records] == [({"Id": 101}, None, None)] * 3


SQS_EVENT = {
    "Records": [
        {
            "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
            "body": "Test message.",
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-2:123456789012:my-queue",
            "awsRegion": "us-east-2",
        }
    ]
}
SNS_EVENT = {
    "Records": [
        {
            "EventVersion": "1.0",
            "EventSource": "aws:sns",
            "Sns": {"Message": "Hello from SNS!"},
        }
    ]
}
KINESIS_EVENT = {
    "Records": [
        {
            "kinesis": {"data": "eyJ9", "partitionKey": "1"},
            "eventSource": "aws:kinesis",
            "eventName": "aws:kinesis:record",
        }
    ]
}


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (SQS_EVENT, r"Records\[0\] has eventSource 'aws:sqs', expected 'aws:dynamodb'"),
        (SNS_EVENT, r"Records\[0\] has eventSource 'aws:sns'"),
        (KINESIS_EVENT, "Kinesis Data Streams for DynamoDB is not supported"),
        ({"detail-type": "Scheduled Event", "source": "aws.events"}, "no 'Records' array"),
        ({}, "no 'Records' array"),
        ({"Records": "x"}, "no 'Records' array"),
        ({"Records": ["x"]}, r"Records\[0\] is not an object"),
        ({"Records": [{"eventSource": "aws:dynamodb"}]}, r"Records\[0\] has no 'dynamodb' object"),
        ([{"eventSource": "aws:dynamodb"}], "expected a mapping, got list"),
        (None, "expected a mapping, got NoneType"),
    ],
)
def test_not_a_dynamodb_streams_event(event: Any, message: str) -> None:
    with pytest.raises(ValueError, match="not a DynamoDB Streams Lambda event") as info:
        parse_lambda_event(event)
    assert info.match(message)


def test_mixed_event_names_the_bad_record() -> None:
    event = _event()
    event["Records"].append(SQS_EVENT["Records"][0])
    with pytest.raises(ValueError, match=r"Records\[3\] has eventSource 'aws:sqs'"):
        parse_lambda_event(event)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (("dynamodb", "SequenceNumber"), "missing dynamodb.SequenceNumber"),
        (("dynamodb", "Keys"), "missing dynamodb.Keys"),
        (("eventName",), "missing eventName"),
    ],
)
def test_malformed_record_in_event(path: tuple[str, ...], message: str) -> None:
    event = _event()
    part = event["Records"][1]
    for key in path[:-1]:
        part = part[key]
    del part[path[-1]]
    with pytest.raises(ValueError, match=message):
        parse_lambda_event(event)


def test_bad_attribute_value_in_event() -> None:
    event = _event()
    event["Records"][0]["dynamodb"]["NewImage"]["Price"] = {"N": "twelve"}
    with pytest.raises(ValueError, match=r"in dynamodb\.NewImage: invalid DynamoDB number"):
        parse_lambda_event(event)
