"""The sender service. Delivers per-token jobs through FCM, APNs and Web Push."""
