"""The sandbox settings that point a sender at running emulators: their endpoints and
the credentials they take."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization

from services.core.credentials import APNSCredentials, FCMCredentials, WebPushCredentials
from services.core.settings import APNSSandbox, FCMSandbox, SandboxSettings, WebPushSandbox
from services.sandbox.emulators.apns import APNSEmulator
from services.sandbox.emulators.fcm import FCMEmulator
from services.sandbox.emulators.keys import ec_key, pkcs8_pem
from services.sandbox.emulators.webpush import WebPushEmulator, b64url


def sandbox_vapid(directory: Path) -> WebPushCredentials:
    """VAPID credentials for sandbox apps (a browser-bound subscription still needs the
    app's own key), their key kept in `directory`."""
    key = ec_key(directory / "sandbox-vapid.pem")
    public = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return WebPushCredentials(
        vapid_private_key=pkcs8_pem(key),
        vapid_public_key=b64url(public),
        subject="mailto:sandbox@pushline.invalid",
    )


def sandbox_settings(
    fcm: FCMEmulator, apns: APNSEmulator, webpush: WebPushEmulator, directory: Path
) -> SandboxSettings:
    """Where sandbox apps reach the three emulators (listening) and with which credentials:
    theirs, and for Web Push the sandbox VAPID key kept in `directory`."""
    return SandboxSettings.model_construct(
        fcm=FCMSandbox(
            endpoint=fcm.url, credentials=FCMCredentials(service_account=fcm.service_account())
        ),
        apns=APNSSandbox(
            endpoint=apns.url,
            ca_file=apns.tls.ca_file,
            credentials=APNSCredentials(
                team_id=apns.team_id,
                key_id=apns.key_id,
                topic=apns.topics[0],
                private_key=apns.key_pem,
            ),
        ),
        webpush=WebPushSandbox(endpoint=webpush.url, credentials=sandbox_vapid(directory)),
    )
