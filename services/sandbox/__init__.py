"""The sandbox: Pushline's test rig, kept out of the production services.

`emulators` holds the FCM, APNs and Web Push emulators (`pushline emulators`), `command`
the demo sandbox app and the inbox of what the emulators received (`pushline sandbox`),
`environment` the file through which running emulators give the services their
`PUSHLINE_SANDBOX_*` settings. Only the `pushline` command (services/cli.py) wires the
package in: no service and nothing in `services.core` imports it
(tests/unit/sandbox/test_isolation.py checks). The sender learns where the emulators are
from those settings alone.
"""
