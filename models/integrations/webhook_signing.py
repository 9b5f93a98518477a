"""Standard Webhooks 1.0 signatures (https://www.standardwebhooks.com), both sides: what
models/integrations/webhooks.py signs its deliveries with, and `verify`, a receiver's check.

Headers `webhook-id` (the event id), `webhook-timestamp` (unix seconds of the attempt) and
`webhook-signature: v1,<base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))>`. A secret
written `whsec_<base64>` (the spec's form, what its libraries take) gives the key
base64-decoded; any other secret is used as its UTF-8 bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping

SECRET_PREFIX = "whsec_"


class VerificationError(ValueError):
    """A request that fails the Standard Webhooks check (the message says why)."""


def secret_key(secret: str) -> bytes:
    """The HMAC key: base64-decoded after a `whsec_` prefix, else the UTF-8 bytes."""
    if not secret.startswith(SECRET_PREFIX):
        return secret.encode()
    encoded = secret[len(SECRET_PREFIX) :]
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error as e:
        raise ValueError("a whsec_ secret must be base64 after the prefix") from e
    if not key:
        raise ValueError("empty webhook secret")
    return key


def _digest(secret: str, msg_id: str, timestamp: str, body: bytes | str) -> bytes:
    data = body.encode() if isinstance(body, str) else body
    signed = f"{msg_id}.{timestamp}.".encode() + data
    return hmac.new(secret_key(secret), signed, hashlib.sha256).digest()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes | str) -> str:
    """The `webhook-signature` value `v1,<base64>` of one message."""
    if "." in msg_id:
        raise ValueError("a webhook id must not contain '.'")
    return "v1," + base64.b64encode(_digest(secret, msg_id, str(timestamp), body)).decode()


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes | str,
    tolerance_s: float = 300,
    now: float | None = None,
):
    """A receiver's check: the parsed JSON body, or VerificationError (missing headers, a
    timestamp more than `tolerance_s` from now, no matching `v1` signature)."""
    h = {k.lower(): v for k, v in headers.items()}
    msg_id, stamp, signatures = (
        h.get(k) for k in ("webhook-id", "webhook-timestamp", "webhook-signature")
    )
    if not (msg_id and stamp and signatures):
        raise VerificationError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        sent_at = int(stamp)
    except ValueError:
        raise VerificationError("webhook-timestamp is not integer unix seconds") from None
    if abs((time.time() if now is None else now) - sent_at) > tolerance_s:
        raise VerificationError("webhook-timestamp is outside the tolerance")
    expected = _digest(secret, msg_id, stamp, body)
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        try:
            given = base64.b64decode(value, validate=True)
        except binascii.Error:
            continue
        if version == "v1" and hmac.compare_digest(expected, given):
            return json.loads(body)
    raise VerificationError("no matching v1 signature")
