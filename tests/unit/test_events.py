"""The event channel (EventHub) and the text of consumer events (``tail -v``)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from ddbstreams import (
    TRIM_HORIZON,
    BatchFailed,
    BatchHandled,
    Checkpoint,
    CheckpointSaved,
    ConsumerStarted,
    Event,
    EventHub,
    RecordsGivenUp,
    ShardFinished,
    after_sequence,
)
from ddbstreams._events import log_event
from ddbstreams.cli._render import event_to_text

SHARD = "shardId-00000001764397880000-0a1b2c3d"
ARN = "arn:aws:dynamodb:eu-west-1:123456789012:table/orders/stream/2025-11-29T06:31:20.000"


def test_events_are_frozen_and_slotted() -> None:
    event = BatchHandled(SHARD, 3, 0.5)
    with pytest.raises(AttributeError):
        event.records = 4  # type: ignore[misc]
    assert not hasattr(event, "__dict__")


async def test_listeners_and_subscriptions_see_every_event() -> None:
    first: list[Event] = []
    second: list[Event] = []
    hub = EventHub(first.append)
    stop_second = hub.listen(second.append)
    subscription = hub.subscribe(10)

    hub.publish(ShardFinished(SHARD))
    stop_second()
    hub.publish(CheckpointSaved(ARN, "app"))
    hub.end_subscriptions()
    hub.publish(BatchHandled(SHARD, 1, 0.0))  # after the subscription ended

    assert first == [ShardFinished(SHARD), CheckpointSaved(ARN, "app"), BatchHandled(SHARD, 1, 0.0)]
    assert second == [ShardFinished(SHARD)]
    assert [event async for event in subscription] == [
        ShardFinished(SHARD),
        CheckpointSaved(ARN, "app"),
    ]
    # The hub goes on: a new subscription sees what comes next; close() ends it for good.
    later = hub.subscribe(10)
    hub.publish(ShardFinished(SHARD))
    hub.close()
    assert [event async for event in later] == [ShardFinished(SHARD)]
    assert [event async for event in hub.subscribe(10)] == []


async def test_a_failing_listener_is_logged_and_the_others_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(event: Event) -> None:
        raise ValueError("oops")

    seen: list[Event] = []
    hub = EventHub(broken)
    hub.listen(seen.append)
    with caplog.at_level(logging.ERROR, logger="ddbstreams"):
        hub.publish(ShardFinished(SHARD))
    await asyncio.sleep(0)

    assert seen == [ShardFinished(SHARD)]
    assert "on_event callback failed" in caplog.text


@pytest.mark.parametrize(
    ("event", "text"),
    [
        (
            ConsumerStarted(ARN, "tail", TRIM_HORIZON),
            f"consumer started: 'tail' on {ARN}, at trim horizon",
        ),
        (
            ConsumerStarted(ARN, "tail", after_sequence("42")),
            f"consumer started: 'tail' on {ARN}, after 42",
        ),
        (
            ConsumerStarted(ARN, "app", Checkpoint(ARN, {SHARD: "42"})),
            f"consumer started: 'app' on {ARN}, from its checkpoint",
        ),
        (BatchHandled(SHARD, 3, 0.0123), f"batch handled: 3 records of {SHARD} in 0.012 s"),
        (BatchHandled(SHARD, 1, 1.0), f"batch handled: 1 record of {SHARD} in 1.000 s"),
        (
            BatchFailed(SHARD, 2, 1, "ValueError: bad\nthing", True),
            f"batch failed: 2 records of {SHARD} (attempt 1): ValueError: bad thing; retrying",
        ),
        (
            BatchFailed(SHARD, 5, 3, "reported batch item failure", False, "reported"),
            f"records not done: 5 records of {SHARD} (the handler said so, attempt 3); not retried",
        ),
        (
            RecordsGivenUp(SHARD, 1, "RecordAgeExceeded"),
            f"records given up: 1 record of {SHARD} (RecordAgeExceeded)",
        ),
        (CheckpointSaved(ARN, "tail"), f"checkpoint saved: 'tail', stream {ARN}"),
    ],
)
def test_consumer_events_as_text(event: Event, text: str) -> None:
    assert event_to_text(event) == text


def test_log_event_keeps_warnings_for_people_and_the_rest_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG, logger="ddbstreams"):
        log_event(BatchFailed(SHARD, 2, 1, "ValueError: bad", True))
        log_event(BatchFailed(SHARD, 2, 1, "reported batch item failure", True, "reported"))
        log_event(RecordsGivenUp(SHARD, 2, "RetryAttemptsExhausted"))
        log_event(BatchHandled(SHARD, 2, 0.1))

    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", f"handler failed on 2 records of {SHARD}: ValueError: bad"),
        ("DEBUG", repr(BatchFailed(SHARD, 2, 1, "reported batch item failure", True, "reported"))),
        ("WARNING", f"giving up on 2 records of {SHARD} (RetryAttemptsExhausted)"),
        ("DEBUG", repr(BatchHandled(SHARD, 2, 0.1))),
    ]
