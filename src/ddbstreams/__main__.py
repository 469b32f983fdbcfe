"""``python -m ddbstreams``: the ``ddbstreams`` command line."""

from __future__ import annotations

import sys

from ddbstreams.cli._main import main

if __name__ == "__main__":
    sys.exit(main())
