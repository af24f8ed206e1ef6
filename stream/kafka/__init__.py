"""Kafka adapter: connection settings, consumers and producers (confluent-kafka)."""
