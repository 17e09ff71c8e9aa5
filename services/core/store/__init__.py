"""The MongoDB store: client, indexes, repositories."""
