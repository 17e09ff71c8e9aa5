"""The HTTP ingest: validates requests and puts commands on Kafka topics."""
