"""Adapters at the edge: Kafka, Redis and the embedded local event log."""
