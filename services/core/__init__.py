"""The shared kernel every service imports: settings, events, topics, Kafka, store, metrics.

It imports no service.
"""
