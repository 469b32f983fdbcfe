"""The transport seam: one protocol between the client and the wire (aiobotocore, or the
simulator in memory)."""
