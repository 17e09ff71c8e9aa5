"""FCM HTTP v1 emulator: Google's OAuth token endpoint and `messages:send`.

Errors are the bodies FCM sends (a google.rpc.Status under "error", with an FcmError detail
that firebase-admin maps to its exception classes):
https://firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from typing import Any, ClassVar

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from services.sandbox.emulators.httpserver import HTTPEmulator
from services.sandbox.emulators.keys import pkcs8_pem, rsa_key, secret
from services.sandbox.emulators.state import RECORD_LIMIT, Record, TokenState

FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
QUOTA_FAILURE = "type.googleapis.com/google.rpc.QuotaFailure"

# google-auth signs the assertion for Google's token endpoint whatever `token_uri` says.
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SCOPES = frozenset(
    {
        "https://www.googleapis.com/auth/cloud-platform",
        "https://www.googleapis.com/auth/firebase.messaging",
    }
)
TOKEN_LIFETIME = 3600
# FCM's limit on a message's payload (data and notification), in bytes.
MAX_PAYLOAD = 4096

_MESSAGE_FIELDS = frozenset(
    {
        "name",
        "data",
        "notification",
        "android",
        "webpush",
        "apns",
        "fcm_options",
        "token",
        "fid",
        "topic",
        "condition",
    }
)
_TARGETS = ("token", "fid", "topic", "condition")
_INVALID_TOKEN = "The registration token is not a valid FCM registration token"  # noqa: S105


def _status(code: int, status: str, message: str, details: list[dict[str, Any]]) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = details
    return {"error": error}


def _fcm_detail(error_code: str) -> dict[str, Any]:
    return {"@type": FCM_ERROR, "errorCode": error_code}


def _violation(field: str, description: str) -> dict[str, Any]:
    return {"@type": BAD_REQUEST, "fieldViolations": [{"field": field, "description": description}]}


class FCMEmulator(HTTPEmulator):
    """FCM HTTP v1 for one project, with a service account whose key it holds.

    `service_account()` is the JSON a client loads (firebase-admin's `credentials.Certificate`);
    its `token_uri` points at this emulator.
    """

    provider = "fcm"

    # (HTTP status, google.rpc status, message) of each injected fault.
    FAULTS: ClassVar[dict[int, tuple[str, str, str]]] = {
        429: (
            "RESOURCE_EXHAUSTED",
            "QUOTA_EXCEEDED",
            "Quota exceeded for quota metric 'Send requests' and limit 'Send requests per "
            "minute' of service 'fcm.googleapis.com'.",
        ),
        500: ("INTERNAL", "INTERNAL", "Internal error encountered."),
        503: ("UNAVAILABLE", "UNAVAILABLE", "The service is currently unavailable."),
    }

    def __init__(
        self,
        *,
        project_id: str = "pushline-sandbox",
        key: rsa.RSAPrivateKey | None = None,
        key_id: str | None = None,
        client_email: str | None = None,
        token_secret: bytes | None = None,
        record_limit: int = RECORD_LIMIT,
    ) -> None:
        super().__init__(record_limit=record_limit)
        self.project_id = project_id
        self._key = key or rsa_key()
        public_der = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.key_id = key_id or hashlib.sha256(public_der).hexdigest()[:40]
        self.client_email = (
            client_email or f"pushline-emulator@{project_id}.iam.gserviceaccount.com"
        )
        # Access tokens are MACs of their expiry: valid across restarts, no table to grow.
        self._token_secret = token_secret or secret()

    @classmethod
    def from_service_account(
        cls, info: dict[str, str], *, record_limit: int = RECORD_LIMIT
    ) -> FCMEmulator:
        """An emulator that accepts the tokens of an existing service-account key file.

        Raises ValueError when `info` lacks a field or its key is not an RSA key.
        """
        try:
            key = serialization.load_pem_private_key(info["private_key"].encode(), None)
            if not isinstance(key, rsa.RSAPrivateKey):
                raise ValueError("the service account's private_key is not an RSA key")
            return cls(
                project_id=info["project_id"],
                key=key,
                key_id=info["private_key_id"],
                client_email=info["client_email"],
                record_limit=record_limit,
            )
        except KeyError as exc:
            raise ValueError(f"service account lacks {exc}") from exc

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/token", self._token),
            web.post("/v1/projects/{project}/messages:send", self._send),
        ]

    @property
    def token_uri(self) -> str:
        """The OAuth token endpoint of this emulator."""
        return f"{self.url}/token"

    def service_account(self) -> dict[str, str]:
        """A service-account key file for this emulator's project, as Google issues them."""
        return {
            "type": "service_account",
            "project_id": self.project_id,
            "private_key_id": self.key_id,
            "private_key": pkcs8_pem(self._key),
            "client_email": self.client_email,
            "client_id": str(int(self.key_id[:15], 16)),
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.token_uri,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "universe_domain": "googleapis.com",
        }

    def client_config(self) -> dict[str, Any]:
        return {
            "endpoint": self.url,
            "project_id": self.project_id,
            "service_account": self.service_account(),
        }

    def issue_access_token(self, now: float | None = None) -> str:
        """An access token valid for an hour (what the token endpoint hands out)."""
        expiry = int(now if now is not None else time.time()) + TOKEN_LIFETIME
        return f"ya29.emulator.{expiry}.{self._mac(expiry)}"

    def _mac(self, expiry: int) -> str:
        digest = hmac.new(self._token_secret, str(expiry).encode(), hashlib.sha256)
        return digest.hexdigest()[:32]

    def _access_token_valid(self, token: str) -> bool:
        prefix, _, rest = token.partition("ya29.emulator.")
        expiry, _, mac = rest.partition(".")
        if prefix or not expiry.isdigit():
            return False
        return hmac.compare_digest(mac, self._mac(int(expiry))) and int(expiry) > time.time()

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != JWT_BEARER:
            return web.json_response(
                {
                    "error": "unsupported_grant_type",
                    "error_description": f"Invalid grant_type: {form.get('grant_type', '')}",
                },
                status=400,
            )
        assertion = form.get("assertion")
        problem = self._assertion_problem(assertion if isinstance(assertion, str) else "")
        if problem is not None:
            error, description = problem
            return web.json_response({"error": error, "error_description": description}, status=400)
        return web.json_response(
            {
                "access_token": self.issue_access_token(),
                "expires_in": TOKEN_LIFETIME - 1,
                "token_type": "Bearer",
            }
        )

    def _assertion_problem(self, assertion: str) -> tuple[str, str] | None:
        """Why Google would refuse the JWT bearer assertion, or None when it is good."""
        try:
            header = jwt.get_unverified_header(assertion)
            claims = jwt.decode(
                assertion,
                self._key.public_key(),
                algorithms=["RS256"],
                audience=[GOOGLE_TOKEN_URI, self.token_uri],
                issuer=self.client_email,
                options={"require": ["iss", "aud", "iat", "exp"]},
                leeway=60,
            )
        except jwt.ExpiredSignatureError:
            return "invalid_grant", (
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a "
                "reasonable timeframe. Check your iat and exp values in the JWT claim."
            )
        except jwt.InvalidIssuerError:
            return "invalid_grant", "Invalid grant: account not found"
        except jwt.PyJWTError:
            return "invalid_grant", "Invalid JWT Signature."
        if header.get("kid") not in (None, self.key_id):
            return "invalid_grant", "Invalid JWT Signature."
        if int(claims["exp"]) - int(claims["iat"]) > TOKEN_LIFETIME:
            return "invalid_grant", (
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a "
                "reasonable timeframe. Check your iat and exp values in the JWT claim."
            )
        if not SCOPES & set(str(claims.get("scope", "")).split()):
            return "invalid_scope", "Invalid OAuth scope or ID token audience provided."
        return None

    async def _send(self, request: web.Request) -> web.Response:
        body = await request.read()
        await self.pause()
        try:
            document = json.loads(body)
        except ValueError:
            document = None
        status, answer, reason, headers = self._answer(request, document)
        message = document.get("message") if isinstance(document, dict) else None
        target = next(
            (str(message[key]) for key in _TARGETS if isinstance(message, dict) and key in message),
            "",
        )
        self.controls.add(
            Record(
                provider=self.provider,
                target=target,
                status=status,
                reason=reason,
                headers={},
                payload=document,
                received_at=time.time(),
            )
        )
        return web.json_response(answer, status=status, headers=headers)

    def _answer(
        self, request: web.Request, document: Any
    ) -> tuple[int, dict[str, Any], str | None, dict[str, str]]:
        """(status, body, reason code, headers) for one send request."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not self._access_token_valid(token):
            message = (
                "Request had invalid authentication credentials. Expected OAuth 2 access "
                "token, login cookie or other valid authentication credential. See "
                "https://developers.google.com/identity/sign-in/web/devconsole-project."
            )
            return 401, _status(401, "UNAUTHENTICATED", message, []), "UNAUTHENTICATED", {}
        project = request.match_info["project"]
        if project != self.project_id:
            message = (
                "Permission 'cloudmessaging.messages.create' denied on resource "
                f"'//cloudresourcemanager.googleapis.com/projects/{project}' "
                "(or it may not exist)."
            )
            return 403, _status(403, "PERMISSION_DENIED", message, []), "PERMISSION_DENIED", {}
        fault = self.controls.draw_fault()
        if fault is not None:
            status, code, message = self.FAULTS[fault.status]
            details = [_fcm_detail(code)]
            if fault.status == 429:
                details.append(
                    {
                        "@type": QUOTA_FAILURE,
                        "violations": [{"subject": "project", "description": message}],
                    }
                )
            headers = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = str(fault.retry_after)
            return fault.status, _status(fault.status, status, message, details), code, headers
        problem = _message_problem(document)
        if problem is not None:
            field, description, fcm_code = problem
            details = [_violation(field, description)]
            if fcm_code:
                details.insert(0, _fcm_detail("INVALID_ARGUMENT"))
            body = _status(400, "INVALID_ARGUMENT", description, details)
            return 400, body, "INVALID_ARGUMENT", {}
        message = document["message"]
        for field in ("token", "fid"):
            if field in message:
                state, _ = self.controls.token_state(message[field])
                if state is TokenState.UNREGISTERED:
                    body = _status(
                        404,
                        "NOT_FOUND",
                        "Requested entity was not found.",
                        [_fcm_detail("UNREGISTERED")],
                    )
                    return 404, body, "UNREGISTERED", {}
                if state is TokenState.INVALID or not _token_looks_valid(message[field]):
                    details = [
                        _fcm_detail("INVALID_ARGUMENT"),
                        _violation(f"message.{field}", _INVALID_TOKEN),
                    ]
                    body = _status(400, "INVALID_ARGUMENT", _INVALID_TOKEN, details)
                    return 400, body, "INVALID_ARGUMENT", {}
        if document.get("validate_only") is True:
            # What FCM answers to a dry run: the name, with no message id behind it.
            return 200, {"name": f"projects/{self.project_id}/messages/fake_message_id"}, None, {}
        message_id = f"0:{time.time_ns() // 1000}%{uuid.uuid4().hex[:16]}"
        return 200, {"name": f"projects/{self.project_id}/messages/{message_id}"}, None, {}


def _token_looks_valid(token: Any) -> bool:
    return isinstance(token, str) and 0 < len(token) <= 4096 and not any(c.isspace() for c in token)


def _message_problem(document: Any) -> tuple[str, str, bool] | None:
    """(field, description, is an FcmError) when FCM would refuse the message, else None.

    Structural problems come from FCM's JSON parser (a BadRequest detail only); semantic
    ones carry an FcmError INVALID_ARGUMENT as well.
    """
    if not isinstance(document, dict) or not isinstance(document.get("message"), dict):
        return "message", "Invalid JSON payload received. 'message' must be an object.", False
    unknown = sorted(set(document) - {"message", "validate_only"})
    if unknown:
        description = (
            f'Invalid JSON payload received. Unknown name "{unknown[0]}": Cannot find field.'
        )
        return unknown[0], description, False
    message = document["message"]
    unknown = sorted(set(message) - _MESSAGE_FIELDS)
    if unknown:
        description = (
            f"Invalid JSON payload received. Unknown name \"{unknown[0]}\" at 'message': "
            "Cannot find field."
        )
        return "message", description, False
    if sum(key in message for key in _TARGETS) != 1:
        return "message", "Recipient of the message is not set.", True
    data = message.get("data", {})
    if not isinstance(data, dict):
        return "message.data", "Invalid value at 'message.data': must be a map of strings.", False
    for index, (key, value) in enumerate(data.items()):
        if not isinstance(value, str):
            description = f"Invalid value at 'message.data[{index}].value' (TYPE_STRING), {value}"
            return f"message.data[{index}].value", description, False
        if key in {"from", "notification", "message_type"} or key.startswith(("google.", "gcm.")):
            return "message.data", f"Invalid data payload key: {key}", True
    payload = {key: message[key] for key in ("data", "notification") if key in message}
    if len(json.dumps(payload, separators=(",", ":")).encode()) > MAX_PAYLOAD:
        return "message", "Message is too big", True
    return None
