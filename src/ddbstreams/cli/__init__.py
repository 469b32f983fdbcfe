"""Layer 7, the ``ddbstreams`` command line."""
