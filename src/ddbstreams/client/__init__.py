"""Layer 2, the client: the only code that talks to AWS (DynamoDB Streams and state tables),
with one place that maps errors and one retry schedule."""
