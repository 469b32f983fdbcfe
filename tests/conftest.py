"""Project-wide test configuration.

The fixtures (``ddb_local``, ``make_source_table``, ``source_table``, simulator fixtures) come
from the ddbstreams pytest plugin, loaded through its ``pytest11`` entry point; do not
redefine them here.
"""

from __future__ import annotations

import pytest

# pytester runs pytest in a subprocess to check the plugin's fixtures end to end.
pytest_plugins = ["pytester"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The folder says what a test needs: everything under integration/ talks to DynamoDB
    Local over HTTP and is marked ``integration``."""
    for item in items:
        if "integration" in item.path.parent.parts:
            item.add_marker(pytest.mark.integration)


def pytest_report_header(config: pytest.Config) -> str:
    """Say which DynamoDB Local the integration tests use (without starting it)."""
    from ddbstreams import local

    where = local.installed_dir()
    state = str(where) if where is not None else "not installed yet (installed on first use)"
    return (
        f"dynamodb-local: {local.NPM_PACKAGE}@{local.NPM_PACKAGE_VERSION} "
        f"(DynamoDB Local {local.DYNAMODB_LOCAL_VERSION}): {state}"
    )
