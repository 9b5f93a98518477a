"""API keys, event tokens and the per-key rate limit, as plain functions (no server)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from models.serving import api_keys as ak
from pipelines.serve.security import RateLimiter


def test_create_stores_the_peppered_hash_and_verify_accepts_only_that_key(tmp_path, monkeypatch):
    monkeypatch.setenv(ak.PEPPER_ENV, "p1")
    db = tmp_path / "keys.db"
    key, row = ak.create(db, "feed", ("score",), rate_per_s=5, burst=10, now=100.0)
    assert key.startswith(f"cf_{row.key_id}_") and len(key) == 3 + 8 + 1 + 43
    assert row.digest == hmac.new(b"p1", key.encode(), hashlib.sha256).hexdigest()
    assert (db.stat().st_mode & 0o777) == 0o600
    store = ak.KeyStore(db, refresh_s=0)
    assert store.verify(key) == row
    assert store.verify(key[:-1] + ("A" if key[-1] != "A" else "B")) is None  # one char off
    assert store.verify(key + "x") is None and store.verify("") is None
    assert ak.KeyStore(db, refresh_s=0, pepper="p2").verify(key) is None  # another pepper


def test_revocation_is_seen_after_refresh_s_and_not_before(tmp_path):
    db = tmp_path / "keys.db"
    key, row = ak.create(db, "feed", ("score",))
    clock = [0.0]
    store = ak.KeyStore(db, refresh_s=1.0, clock=lambda: clock[0])
    assert store.verify(key) == row
    assert ak.revoke(db, key)  # by the whole key, too
    clock[0] = 0.99
    assert store.verify(key) == row  # not re-read yet
    clock[0] = 1.0
    assert store.verify(key) is None
    assert not ak.revoke(db, row.key_id)  # already revoked
    assert [k.revoked_at is not None for k in ak.list_keys(db)] == [True]
    with pytest.raises(ak.ApiKeyError, match="key_id"):
        ak.revoke(db, "1' OR '1'='1")


@pytest.mark.parametrize(
    ("scopes", "ok"),
    [("score", ("score",)), ("events, score", ("events", "score")), ("admin", ("admin",))],
)
def test_parse_scopes(scopes, ok):
    assert ak.parse_scopes(scopes) == ok


@pytest.mark.parametrize("bad", ["", " , ", "score,root", "Score"])
def test_parse_scopes_refuses_unknown_or_empty(bad):
    with pytest.raises(ak.ApiKeyError, match="--scopes"):
        ak.parse_scopes(bad)


@pytest.mark.parametrize(
    ("name", "rate", "burst", "field"),
    [("", 1, 1, "--name"), ("x" * 65, 1, 1, "--name"), ("a'; --", 1, 1, "--name"),
     ("ok", -1, 1, "--rate"), ("ok", 1, 0, "--rate")],
)  # fmt: skip
def test_create_refuses_bad_arguments(tmp_path, name, rate, burst, field):
    with pytest.raises(ak.ApiKeyError, match=field):
        ak.create(tmp_path / "k.db", name, ("score",), rate_per_s=rate, burst=burst)
    ak.create(tmp_path / "k.db", "x" * 64, ("score",), rate_per_s=0, burst=0)  # the edges


def test_admin_implies_every_scope_and_others_only_their_own():
    admin = ak.ApiKey("a", "a", ("admin",), 0, 0, 0, None, "")
    scorer = ak.ApiKey("b", "b", ("score",), 0, 0, 0, None, "")
    assert all(admin.allows(s) for s in ak.SCOPES)
    assert [s for s in ak.SCOPES if scorer.allows(s)] == ["score"]
    assert "digest" not in scorer.public()


def test_event_token_binds_a_user_until_it_expires():
    token, exp = ak.mint_token("u1", 60, secret="s", now=1000.0)
    assert exp == 1060
    payload, sig = token.split(".")
    doc = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert doc == {"u": "u1", "exp": 1060}
    expected = hmac.new(b"s", payload.encode(), hashlib.sha256).digest()
    assert base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)) == expected
    assert ak.verify_token(token, secret="s", now=1059.9) == "u1"
    assert ak.verify_token(token, secret="s", now=1060.0) is None  # expired at exp
    assert ak.verify_token(token, secret="other", now=1000) is None
    assert ak.verify_token(token, secret="", now=1000) is None  # no secret: no tokens


def test_a_token_cannot_be_rebound_to_another_user():
    token, _ = ak.mint_token("u1", 60, secret="s", now=0)
    _, sig = token.split(".")
    forged = base64.urlsafe_b64encode(b'{"u":"u2","exp":60}').rstrip(b"=").decode()
    assert ak.verify_token(f"{forged}.{sig}", secret="s", now=0) is None
    for junk in ("", ".", "a.b.c", "x" * 2000, f"{forged}"):
        assert ak.verify_token(junk, secret="s", now=0) is None


@pytest.mark.parametrize(("ttl", "ok"), [(1, True), (86_400, True), (0, False), (86_401, False)])
def test_token_ttl_bounds(ttl, ok):
    if ok:
        assert ak.mint_token("u1", ttl, secret="s", now=0)[1] == ttl
    else:
        with pytest.raises(ak.ApiKeyError, match="ttl"):
            ak.mint_token("u1", ttl, secret="s", now=0)


def test_tokens_need_a_secret_and_a_valid_user():
    with pytest.raises(ak.ApiKeyError, match=ak.TOKEN_SECRET_ENV):
        ak.mint_token("u1", 60, secret="")
    with pytest.raises(ak.ApiKeyError, match="user_id"):
        ak.mint_token("u 1", 60, secret="s")


def test_rate_limiter_allows_the_burst_then_refills_at_the_rate():
    clock = [0.0]
    limiter = RateLimiter(clock=lambda: clock[0])
    key = ak.ApiKey("k", "k", ("score",), 2.0, 3, 0, None, "")
    assert [limiter.wait_s(key) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.wait_s(key) == pytest.approx(0.5)  # 1 token at 2/s
    clock[0] = 0.49
    assert limiter.wait_s(key) > 0
    clock[0] = 0.5
    assert limiter.wait_s(key) == 0.0
    clock[0] = 100.0  # refills up to the burst, no more
    assert [limiter.wait_s(key) == 0.0 for _ in range(4)] == [True, True, True, False]
    unlimited = ak.ApiKey("u", "u", ("score",), 0.0, 0, 0, None, "")
    assert all(limiter.wait_s(unlimited) == 0.0 for _ in range(1000))


def test_a_new_key_is_seen_on_its_first_use_but_misses_reread_at_most_every_50_ms(tmp_path):
    db = tmp_path / "keys.db"
    ak.create(db, "first", ("score",))
    clock = [0.0]
    store = ak.KeyStore(db, refresh_s=1.0, clock=lambda: clock[0])
    assert store.verify("cf_00000000_" + "A" * 43) is None  # read at 0
    key, row = ak.create(db, "second", ("score",))
    clock[0] = ak.MISS_REFRESH_S - 0.001
    assert store.verify(key) is None  # a miss re-reads, but not more often than that
    clock[0] = ak.MISS_REFRESH_S
    assert store.verify(key) == row  # long before refresh_s
