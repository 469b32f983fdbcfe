"""Integration tests: DynamoDB Local over HTTP through the client code users run
(every test here is marked ``integration`` by conftest.py)."""
