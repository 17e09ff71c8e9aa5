"""Pushline: a push notification pipeline over Kafka, MongoDB, FCM, APNs and Web Push."""
