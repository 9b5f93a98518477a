"""Webhook subscribers, Standard Webhooks signatures, backoff and the deliveries table
(no network here: delivery over HTTP is in tests/pipelines/sensors/test_webhooks.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import time

import pytest

from models.integrations.events import Event
from models.integrations.outbound import ALLOW_ENV
from models.integrations.webhooks import (
    RetryPolicy,
    Subscriber,
    VerificationError,
    deliveries,
    enqueue,
    load_subscribers,
    next_delay,
    payload,
    sign,
    verify,
)

# The Python library's test vector (standard-webhooks/standard-webhooks,
# libraries/python/tests/test_webhooks.py::test_sign_function)
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TS = 1614265330
VECTOR_BODY = '{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def _headers(secret: str, msg_id: str, ts: int, body: str) -> dict:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign(secret, msg_id, ts, body),
    }


def test_signature_matches_the_standard_webhooks_test_vector():
    assert sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TS, VECTOR_BODY) == VECTOR_SIGNATURE
    headers = {
        "Webhook-Id": VECTOR_ID,  # header names are case-insensitive
        "Webhook-Timestamp": str(VECTOR_TS),
        # rotation: several signatures, one valid; other versions are ignored
        "Webhook-Signature": f"v1a,AAAA v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= {VECTOR_SIGNATURE}",
    }
    assert verify(VECTOR_SECRET, headers, VECTOR_BODY, now=VECTOR_TS + 10) == {"test": 2432232314}


def test_plain_secret_is_used_as_utf8_bytes_and_round_trips():
    secret, body, now = "s3cret-not-base64!", payload(_event("1-0")), int(time.time())
    expected = hmac.new(secret.encode(), f"1-0.{now}.{body}".encode(), hashlib.sha256).digest()
    assert sign(secret, "1-0", now, body) == "v1," + base64.b64encode(expected).decode()
    assert verify(secret, _headers(secret, "1-0", now, body), body.encode())["id"] == "1-0"


@pytest.mark.parametrize(
    "change, why",
    [
        (lambda h, b: (h, b.replace("2432232314", "2432232315")), "no matching"),
        (lambda h, b: ({**h, "webhook-id": "msg_other"}, b), "no matching"),
        (lambda h, b: ({**h, "webhook-signature": "v1,not*base64"}, b), "no matching"),
        (lambda h, b: ({k: v for k, v in h.items() if k != "webhook-id"}, b), "missing"),
        (lambda h, b: ({**h, "webhook-timestamp": "soon"}, b), "unix seconds"),
    ],
)
def test_tampered_or_malformed_requests_are_rejected(change, why):
    headers, body = change(_headers(VECTOR_SECRET, VECTOR_ID, VECTOR_TS, VECTOR_BODY), VECTOR_BODY)
    with pytest.raises(VerificationError, match=why):
        verify(VECTOR_SECRET, headers, body, now=VECTOR_TS)


def test_wrong_secret_is_rejected():
    headers = _headers(VECTOR_SECRET, VECTOR_ID, VECTOR_TS, VECTOR_BODY)
    with pytest.raises(VerificationError):
        verify("whsec_" + base64.b64encode(b"x" * 32).decode(), headers, VECTOR_BODY, now=VECTOR_TS)


@pytest.mark.parametrize("offset, ok", [(-301, False), (-299, True), (299, True), (301, False)])
def test_timestamp_tolerance(offset, ok):
    headers = _headers(VECTOR_SECRET, VECTOR_ID, VECTOR_TS, VECTOR_BODY)
    if ok:
        verify(VECTOR_SECRET, headers, VECTOR_BODY, now=VECTOR_TS - offset)
    else:
        with pytest.raises(VerificationError, match="tolerance"):
            verify(VECTOR_SECRET, headers, VECTOR_BODY, now=VECTOR_TS - offset)


def test_ids_with_a_dot_cannot_be_signed():
    with pytest.raises(ValueError, match="must not contain"):
        sign(VECTOR_SECRET, "a.b", VECTOR_TS, VECTOR_BODY)


SUBSCRIBERS_YAML = """\
subscribers:
  - {name: ops, url: "https://ops.example.com/hook", events: [run_failed], secret_env: OPS_SECRET}
  - {name: all, url: "http://127.0.0.1:9/hook", events: ["*"], secret_env: ALL_SECRET}
  - {name: typo, url: "https://x.example.com", events: [run_failed], secret_env: OPS_SECRET, evnts: []}
  - {name: ftp, url: "ftp://x.example.com/hook", events: [run_failed], secret_env: OPS_SECRET}
  - {name: odd, url: "https://x.example.com", events: [model_trained], secret_env: OPS_SECRET}
  - {name: none, url: "https://x.example.com", events: [], secret_env: OPS_SECRET}
  - {name: nosecret, url: "https://x.example.com", events: ["*"], secret_env: MISSING_SECRET}
  - {name: badkey, url: "https://x.example.com", events: ["*"], secret_env: BAD_SECRET}
  - {name: ops, url: "https://x.example.com", events: ["*"], secret_env: OPS_SECRET}
  - just a string
"""


def test_subscribers_are_validated_one_by_one(tmp_path):
    path = tmp_path / "webhooks.yaml"
    path.write_text(SUBSCRIBERS_YAML)
    env = {"OPS_SECRET": "whsec_" + base64.b64encode(b"k" * 24).decode(), "ALL_SECRET": "plain"}
    env["BAD_SECRET"] = "whsec_***"
    env[ALLOW_ENV] = "127.0.0.1:9"  # the loopback subscriber `all` (tests/security: refused)
    subs, errors = load_subscribers(path, environ=env)
    assert [s.name for s in subs] == ["ops", "all", "nosecret", "badkey"]
    assert subs[0].wants("run_failed") and not subs[0].wants("drift_detected")
    assert subs[1].wants("drift_detected")
    # a missing or malformed secret holds the subscriber (its deliveries wait), never skips it
    assert [s.held for s in subs] == [
        None,
        None,
        "secret_env: environment variable MISSING_SECRET is not set",
        "secret_env: BAD_SECRET starts with whsec_ but is not base64",
    ]
    expected = [
        "('typo'): unknown field(s) evnts",
        "('ftp'): url:",
        "('odd'): events: unknown ['model_trained']",
        "('none'): events:",
        "('ops'): name: 'ops' is used by an earlier subscriber",
        "subscribers[9]: expected a mapping",
    ]
    assert len(errors) == len(expected)
    for error, fragment in zip(errors, expected, strict=True):
        assert fragment in error
    assert not any(secret in " ".join(errors) for secret in env.values())
    assert "plain" not in repr(subs)


def test_missing_or_malformed_subscribers_file(tmp_path):
    assert load_subscribers(tmp_path / "absent.yaml") == ([], [])
    bad = tmp_path / "bad.yaml"
    bad.write_text("subscribers: [unclosed\n")
    subs, [error] = load_subscribers(bad)
    assert subs == [] and "not valid YAML" in error
    bad.write_text("- name: a\n")
    assert "a list `subscribers`" in load_subscribers(bad)[1][0]


def test_backoff_is_exponential_full_jitter_with_a_cap():
    policy = RetryPolicy(base_s=2, cap_s=60)
    rng = random.Random(7)
    for attempts in range(1, 12):
        ceiling = min(60, 2 * 2 ** (attempts - 1))
        delays = [next_delay(attempts, policy, rng=rng) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > 0.8 * ceiling  # jitter spans the whole window
    assert next_delay(3, policy, retry_after=120, rng=rng) >= 120  # Retry-After is a floor
    assert next_delay(1, policy, retry_after=10**9, rng=rng) == policy.max_retry_after_s


def _event(event_id: str, type: str = "run_failed") -> Event:
    return Event(event_id, type, {"job_name": "nightly_job"}, None, "2026-04-01T00:00:00+00:00")


def test_body_is_the_documented_json():
    assert json.loads(payload(_event("5-0"))) == {
        "id": "5-0",
        "type": "run_failed",
        "timestamp": "2026-04-01T00:00:00+00:00",
        "data": {"job_name": "nightly_job"},
        "user_id": None,
    }


def test_enqueue_is_idempotent_per_event_and_subscriber(tmp_path):
    db = tmp_path / "webhooks.db"
    subs = [
        Subscriber("ops", "https://ops.example.com", ("run_failed",), "OPS_SECRET"),
        Subscriber("all", "https://all.example.com", ("*",), "ALL_SECRET"),
    ]
    batch = [_event("1-0"), _event("2-0", "drift_detected")]
    assert enqueue(db, batch, subs, now=100.0) == 3  # ops does not want drift_detected
    assert enqueue(db, batch + [_event("3-0")], subs, now=200.0) == 2  # only 3-0 is new
    rows = deliveries(db)
    assert sorted((r["event_id"], r["subscriber"]) for r in rows) == [
        ("1-0", "all"),
        ("1-0", "ops"),
        ("2-0", "all"),
        ("3-0", "all"),
        ("3-0", "ops"),
    ]
    assert {r["status"] for r in rows} == {"pending"} and {r["attempts"] for r in rows} == {0}
    first = next(r for r in rows if r["event_id"] == "1-0")
    assert first["created_at"] == first["next_attempt_at"] == 100.0  # untouched by re-queue
    assert enqueue(db, [], subs, now=300.0) == 0
