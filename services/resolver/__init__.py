"""The resolver service. Expands registrations and send requests into per-token jobs."""
