"""Real-service fixtures: the Kafka-protocol broker (tansu) and Redis."""
