"""A table whose stream is disabled and enabled again gets a new stream ARN: a group
configured by table name reads the old stream to its end, then the new one from its start
(saying so in an event); one configured by ARN ends cleanly. On DynamoDB Local itself."""

from __future__ import annotations

import asyncio

from ddbstreams import StreamReplaced
from ddbstreams.local import DynamoDBLocal, SourceTable
from tests.support.groups import Handled, Worker, group_name, running, wait_for


def replace_stream(ddb_local: DynamoDBLocal, table: SourceTable) -> str:
    client = ddb_local.dynamodb_client()
    client.update_table(TableName=table.name, StreamSpecification={"StreamEnabled": False})
    client.update_table(
        TableName=table.name,
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    arn = client.describe_table(TableName=table.name)["Table"]["LatestStreamArn"]
    assert arn != table.stream_arn
    return str(arn)


async def test_a_group_by_table_name_follows_the_new_stream(
    ddb_local: DynamoDBLocal, source_table: SourceTable
) -> None:
    for n in range(5):
        source_table.put({"pk": f"old-{n}"})
    handled = Handled()
    group = group_name()
    worker = Worker(ddb_local.endpoint_url, source_table.name, group, handled, "w1")
    async with running(worker):
        await wait_for(lambda: len(handled.calls) >= 5, within=20)
        await asyncio.to_thread(replace_stream, ddb_local, source_table)
        for n in range(3):
            source_table.put({"pk": f"new-{n}"})
        await wait_for(lambda: len(handled.calls) >= 8, within=30)
    keys = [record.keys["pk"] for record in handled.records()]
    assert keys == [f"old-{n}" for n in range(5)] + [f"new-{n}" for n in range(3)]
    replaced = [e for _, e in handled.events if isinstance(e, StreamReplaced)]
    assert len(replaced) == 1
    assert replaced[0].old_stream_arn == source_table.stream_arn


async def test_a_group_by_stream_arn_ends_cleanly_with_its_stream(
    ddb_local: DynamoDBLocal, source_table: SourceTable
) -> None:
    for n in range(5):
        source_table.put({"pk": f"old-{n}"})
    handled = Handled()
    worker = Worker(ddb_local.endpoint_url, source_table.stream_arn, group_name(), handled, "w1")
    worker.start()
    await wait_for(lambda: len(handled.calls) >= 5, within=20)
    await asyncio.to_thread(replace_stream, ddb_local, source_table)
    source_table.put({"pk": "new-0"})
    assert worker.task is not None
    await asyncio.wait_for(worker.task, 30)  # run() returned by itself
    await worker.client.close()
    assert [record.keys["pk"] for record in handled.records()] == [f"old-{n}" for n in range(5)]
    assert not any(isinstance(e, StreamReplaced) for _, e in handled.events)
