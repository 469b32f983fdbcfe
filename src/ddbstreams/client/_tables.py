"""StateTableClient: DynamoDB operations on the tables this library writes.

Checkpoint stores (and lease tables) keep their state in DynamoDB tables. Their calls run
on the same :class:`~ddbstreams.client._retrying.RetryExecutor` as the streams operations of the
:class:`~ddbstreams.client._streams.StreamsClient` they belong to (``client.tables``): one
transport, one retry policy, one clock, one set of listeners. Items and keys are DynamoDB
wire attribute maps (``{"name": {"S": "x"}}``); the stores own the item layout.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ddbstreams._errors import ServiceError
from ddbstreams.client._errormap import CallTarget
from ddbstreams.client._retrying import RetryExecutor
from ddbstreams.transport._seam import TransportError

__all__ = ["StateTableClient"]


class StateTableClient:
    """DescribeTable, CreateTable and the item operations of state tables, retried.

    :class:`~ddbstreams.TableNotFoundError` when a table does not exist; every other error
    is mapped as for the streams operations.
    """

    def __init__(self, executor: RetryExecutor) -> None:
        self._executor = executor

    async def describe_table(self, table_name: str) -> dict[str, Any]:
        """DescribeTable: the ``Table`` description (wire shape)."""
        target = CallTarget(table_name=table_name)
        response = await self._executor.call("DescribeTable", {"TableName": table_name}, target)
        table = response.get("Table")
        if not isinstance(table, dict):
            raise ServiceError(f"DescribeTable for {target.describe()} returned no table")
        return table

    async def create_table(
        self,
        table_name: str,
        *,
        attribute_definitions: Sequence[Mapping[str, str]],
        key_schema: Sequence[Mapping[str, str]],
        billing_mode: str = "PAY_PER_REQUEST",
    ) -> bool:
        """CreateTable; True if this call created it, False if it already existed.

        Returns as soon as the service accepted the request: the table may still be
        CREATING (poll :meth:`describe_table`). ResourceInUseException (the table exists
        or is being created, perhaps by a concurrent caller) is not an error here.
        """
        params: dict[str, Any] = {
            "TableName": table_name,
            "AttributeDefinitions": [dict(d) for d in attribute_definitions],
            "KeySchema": [dict(k) for k in key_schema],
            "BillingMode": billing_mode,
        }
        transport = self._executor.transport

        async def attempt() -> bool:
            try:
                await transport.call("CreateTable", params)
            except TransportError as error:
                if error.code == "ResourceInUseException":
                    return False
                raise
            return True

        return await self._executor.run("CreateTable", attempt, CallTarget(table_name=table_name))

    async def get_item(
        self, table_name: str, key: Mapping[str, Any], *, consistent_read: bool = True
    ) -> dict[str, Any] | None:
        """GetItem (strongly consistent by default): the item's attribute map, or None."""
        params: dict[str, Any] = {
            "TableName": table_name,
            "Key": dict(key),
            "ConsistentRead": consistent_read,
        }
        response = await self._executor.call("GetItem", params, CallTarget(table_name=table_name))
        item = response.get("Item")
        return item if isinstance(item, dict) else None

    async def put_item(
        self,
        table_name: str,
        item: Mapping[str, Any],
        *,
        condition_expression: str | None = None,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
    ) -> None:
        """PutItem, optionally conditional.

        :class:`~ddbstreams.ConditionFailedError` when ``condition_expression`` does not
        hold. A retried attempt (after a lost response) may find the condition already spent
        by its own earlier attempt: callers that care read the item back to tell.
        """
        await self._write("PutItem", table_name, "Item", item, condition_expression, names, values)

    async def delete_item(
        self,
        table_name: str,
        key: Mapping[str, Any],
        *,
        condition_expression: str | None = None,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
    ) -> None:
        """DeleteItem, optionally conditional (:class:`~ddbstreams.ConditionFailedError`).
        Deleting an item that does not exist is not an error."""
        await self._write("DeleteItem", table_name, "Key", key, condition_expression, names, values)

    async def _write(
        self,
        operation: str,
        table_name: str,
        member: str,
        value: Mapping[str, Any],
        condition_expression: str | None,
        names: Mapping[str, str] | None,
        values: Mapping[str, Any] | None,
    ) -> None:
        """A conditional write: ``params[member]`` is the item or the key."""
        params: dict[str, Any] = {"TableName": table_name, member: dict(value)}
        if condition_expression is not None:
            params["ConditionExpression"] = condition_expression
        if names:
            params["ExpressionAttributeNames"] = dict(names)
        if values:
            params["ExpressionAttributeValues"] = dict(values)
        await self._executor.call(operation, params, CallTarget(table_name=table_name))
