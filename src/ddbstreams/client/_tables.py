"""StateTableClient: DynamoDB operations on the tables this library writes.

Checkpoint stores (and lease tables) keep their state in DynamoDB tables. Their calls run
on the same :class:`~ddbstreams.client._retrying.RetryExecutor` as the streams operations of the
:class:`~ddbstreams.client._streams.StreamsClient` they belong to (``client.tables``): one
transport, one retry policy, one clock, one set of listeners. Items and keys are DynamoDB
wire attribute maps (``{"name": {"S": "x"}}``); the stores own the item layout.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from ddbstreams._clock import Clock
from ddbstreams._errors import DDBStreamsError, ServiceError, TableNotFoundError
from ddbstreams.client._errormap import CallTarget
from ddbstreams.client._retrying import RetryExecutor
from ddbstreams.transport._seam import TransportError

__all__ = ["StateTableClient"]

_READY_STATUSES: Final = frozenset({"ACTIVE", "UPDATING"})
TABLE_POLL_INTERVAL: Final = 1.0
"""Seconds between two DescribeTable calls while a new table is CREATING."""
TABLE_WAIT_LIMIT: Final = 300.0
"""Seconds a new table may stay CREATING before :meth:`StateTableClient.ensure_table` gives up."""


class StateTableClient:
    """DescribeTable, CreateTable, Scan and the item operations of state tables, retried.

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

    async def ensure_table(
        self,
        table_name: str,
        *,
        attribute_definitions: Sequence[Mapping[str, str]],
        key_schema: Sequence[Mapping[str, str]],
        create: bool = True,
        clock: Clock | None = None,
        unusable: Callable[[str], DDBStreamsError] = ServiceError,
        kind: str = "state table",
    ) -> dict[str, Any]:
        """The description of ``table_name`` once it is usable, creating it if missing.

        With ``create`` a missing table is created (on-demand capacity, the given key
        schema; a concurrent creator is fine) and this waits, polling DescribeTable every
        second through ``clock`` (by default the client's), until it is ACTIVE. Without it a
        missing table raises :class:`~ddbstreams.TableNotFoundError`. A table in another
        state (DELETING, ARCHIVED...) or still CREATING after five minutes raises
        ``unusable(message)``, the message naming the table as ``kind``. The key schema of
        an existing table is not checked: the caller compares it with what it expects.
        """
        try:
            table = await self.describe_table(table_name)
        except TableNotFoundError:
            if not create:
                raise
            await self.create_table(
                table_name, attribute_definitions=attribute_definitions, key_schema=key_schema
            )
            table = await self.describe_table(table_name)
        return await self.wait_until_active(
            table_name, table, clock=clock, unusable=unusable, kind=kind
        )

    async def wait_until_active(
        self,
        table_name: str,
        table: Mapping[str, Any] | None = None,
        *,
        clock: Clock | None = None,
        unusable: Callable[[str], DDBStreamsError] = ServiceError,
        kind: str = "state table",
    ) -> dict[str, Any]:
        """Poll DescribeTable until ``table_name`` is ACTIVE (or UPDATING); its description.

        ``table`` is a description already in hand (saves the first call). Waits through
        ``clock`` (by default the client's), one second between polls; ``unusable(message)``
        is raised for a table neither ready nor CREATING, or CREATING for over five minutes.
        """
        wait = (clock if clock is not None else self._executor.clock).sleep
        current = dict(table) if table is not None else await self.describe_table(table_name)
        waited = 0.0
        while current.get("TableStatus") not in _READY_STATUSES:
            status = current.get("TableStatus")
            if status != "CREATING":
                raise unusable(f"{kind} {table_name!r} is {status}, not ACTIVE")
            if waited >= TABLE_WAIT_LIMIT:
                raise unusable(
                    f"{kind} {table_name!r} was still CREATING after {TABLE_WAIT_LIMIT:g}s"
                )
            await wait(TABLE_POLL_INTERVAL)
            waited += TABLE_POLL_INTERVAL
            current = await self.describe_table(table_name)
        return current

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

    async def update_item(
        self,
        table_name: str,
        key: Mapping[str, Any],
        *,
        update_expression: str,
        condition_expression: str | None = None,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
        return_values: str | None = None,
    ) -> dict[str, Any] | None:
        """UpdateItem, optionally conditional; only the attributes the expression names change.

        With ``return_values`` (``ALL_NEW``, ``ALL_OLD``, ``UPDATED_NEW``...) returns the
        response's ``Attributes`` (an empty dict when there are none), else None.
        :class:`~ddbstreams.ConditionFailedError` when ``condition_expression`` does not
        hold; as for :meth:`put_item`, a retry after a lost response may find the condition
        spent by its own first attempt.
        """
        extra: dict[str, Any] = {"UpdateExpression": update_expression}
        if return_values is not None:
            extra["ReturnValues"] = return_values
        response = await self._write(
            "UpdateItem", table_name, "Key", key, condition_expression, names, values, extra
        )
        if return_values is None:
            return None
        attributes = response.get("Attributes")
        return attributes if isinstance(attributes, dict) else {}

    async def scan(
        self, table_name: str, *, consistent_read: bool = True, page_size: int | None = None
    ) -> list[dict[str, Any]]:
        """Every item of ``table_name``: Scan, page after page (``LastEvaluatedKey``).

        Strongly consistent by default. ``page_size`` caps the items per Scan call
        (``Limit``); without it the service's 1 MB pages apply.
        """
        target = CallTarget(table_name=table_name)
        params: dict[str, Any] = {"TableName": table_name, "ConsistentRead": consistent_read}
        if page_size is not None:
            params["Limit"] = page_size
        items: list[dict[str, Any]] = []
        while True:
            response = await self._executor.call("Scan", dict(params), target)
            page = response.get("Items", [])
            if not isinstance(page, list):
                raise self._executor.malformed("Scan", target, TypeError("Items is not a list"))
            items.extend(item for item in page if isinstance(item, dict))
            last = response.get("LastEvaluatedKey")
            if not last:
                return items
            params["ExclusiveStartKey"] = last

    async def _write(
        self,
        operation: str,
        table_name: str,
        member: str,
        value: Mapping[str, Any],
        condition_expression: str | None,
        names: Mapping[str, str] | None,
        values: Mapping[str, Any] | None,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A conditional write: ``params[member]`` is the item or the key; its response."""
        params: dict[str, Any] = {"TableName": table_name, member: dict(value), **(extra or {})}
        if condition_expression is not None:
            params["ConditionExpression"] = condition_expression
        if names:
            params["ExpressionAttributeNames"] = dict(names)
        if values:
            params["ExpressionAttributeValues"] = dict(values)
        return await self._executor.call(operation, params, CallTarget(table_name=table_name))
