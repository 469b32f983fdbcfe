"""``python -m ddbstreams.local``: install, start or stop DynamoDB Local."""

import sys

from ddbstreams.local._engine import main

sys.exit(main())
