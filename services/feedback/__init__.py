"""The feedback service. The only writer of device state; counts; webhooks."""
