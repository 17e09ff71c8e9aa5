"""A tiny real HTTP server speaking Google OAuth (JWT bearer grant) and FCM HTTP v1 JSON.

The FCM adapter's unit tests talk real HTTP to this server on 127.0.0.1, so they cover the
requests as sent (URL, headers, JSON body, keep-alive). It runs in a thread: google-auth
refreshes tokens with the blocking `requests` library.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

# firebase-admin asks for its broad scopes (cloud-platform, firebase, ...), not the narrower
# firebase.messaging scope Google documents for FCM.
FCM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def fcm_error(status: int, code: str, *details: dict[str, Any], message: str = "x") -> Answer:
    """An FCM v1 error body as Google sends it."""
    return Answer(
        status,
        {
            "error": {
                "code": status,
                "message": message,
                "status": code,
                "details": list(details),
            }
        },
    )


def fcm_detail(error_code: str) -> dict[str, Any]:
    return {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": error_code}


@dataclass
class FakeFCM:
    """What the server received, and what it is told to answer."""

    key: rsa.RSAPrivateKey
    project: str = "pushline-test"
    base_url: str = ""
    token_requests: list[dict[str, Any]] = field(default_factory=list)
    sends: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    # Answers by device token (or "/topics/<name>"), consumed in order; the last repeats.
    answers: dict[str, list[Answer]] = field(default_factory=dict)
    token_answer: Answer | None = None
    issued: set[str] = field(default_factory=set)
    accept_tokens: bool = True
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def token_uri(self) -> str:
        return f"{self.base_url}/token"

    def service_account(self) -> dict[str, Any]:
        pem = self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        return {
            "type": "service_account",
            "project_id": self.project,
            "private_key_id": "kid-1",
            "private_key": pem,
            "client_email": f"pushline@{self.project}.iam.gserviceaccount.com",
            "client_id": "1",
            "token_uri": self.token_uri,
        }

    def oauth(self, form: dict[str, str]) -> Answer:
        self.token_requests.append(form)
        if self.token_answer is not None:
            return self.token_answer
        claims = jwt.decode(
            form["assertion"],
            self.key.public_key(),
            algorithms=["RS256"],
            # google-auth signs for Google's token endpoint whatever the token_uri is.
            audience="https://oauth2.googleapis.com/token",
        )
        assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
        assert claims["iss"] == f"pushline@{self.project}.iam.gserviceaccount.com"
        assert FCM_SCOPE in claims["scope"].split()
        token = f"ya29.test-{len(self.token_requests)}"
        self.issued.add(token)
        return Answer(200, {"access_token": token, "expires_in": 3600, "token_type": "Bearer"})

    def send(self, path: str, authorization: str, body: dict[str, Any]) -> Answer:
        self.paths.append(path)
        self.sends.append(body)
        if not self.accept_tokens or authorization.removeprefix("Bearer ") not in self.issued:
            return fcm_error(401, "UNAUTHENTICATED", message="Request had invalid credentials.")
        message = body["message"]
        target = message["token"] if "token" in message else f"/topics/{message['topic']}"
        queue = self.answers.get(target)
        if queue:
            return queue.pop(0) if len(queue) > 1 else queue[0]
        suffix = "fake_message_id" if body.get("validate_only") else target
        return Answer(200, {"name": f"projects/{self.project}/messages/{suffix}"})


def _handler(fake: FakeFCM) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with fake.lock:
                if self.path == "/token":
                    form = dict(urllib.parse.parse_qsl(raw.decode()))
                    answer = fake.oauth(form)
                else:
                    answer = fake.send(
                        self.path, self.headers.get("Authorization", ""), json.loads(raw)
                    )
            payload = json.dumps(answer.body).encode()
            self.send_response(answer.status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def running_fcm(key: rsa.RSAPrivateKey) -> Iterator[FakeFCM]:
    fake = FakeFCM(key=key)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    server.daemon_threads = True
    fake.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
