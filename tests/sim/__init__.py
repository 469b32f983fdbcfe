"""Tests over the stream simulator (in memory, or HTTP on loopback): what DynamoDB Local
cannot do (many shards, splits, expiry, trimming, throttling)."""
