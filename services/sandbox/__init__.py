"""The sandbox: Pushline's test rig, kept out of the production services.

`emulators` holds the FCM, APNs and Web Push emulators (`pushline emulators`), `command`
the demo sandbox app and the inbox of what the emulators received (`pushline sandbox`).
Only the `pushline` command (services/cli.py) wires it in: no service and nothing in
`services.core` imports it (tests/unit/sandbox/test_isolation.py checks). The sender
learns where the emulators are from `PUSHLINE_SANDBOX_*` settings alone.
"""
