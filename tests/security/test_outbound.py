"""The outbound guard's policy (models/integrations/outbound.py): which addresses are
refused, the allowlist's syntax, URL checks after resolution, and webhook subscribers
refused at load with an error naming the `url` field. No sockets are opened here except
to resolve `localhost`; tests/security/test_outbound_http.py sends to real servers."""

from __future__ import annotations

import json
import re

import pytest

from models.integrations.outbound import (
    ALLOW_ENV,
    OutboundRefused,
    check_url,
    forbidden_range,
    parse_allowlist,
)
from models.integrations.webhooks import load_subscribers

HINT = f"; allowlist it in {ALLOW_ENV} to allow"

# (address, why it is refused): every forbidden range, in both families
FORBIDDEN = [
    ("127.0.0.1", "loopback (127.0.0.0/8)"),
    ("127.255.255.254", "loopback (127.0.0.0/8)"),
    ("10.0.0.1", "private (10.0.0.0/8)"),
    ("172.16.0.0", "private (172.16.0.0/12)"),
    ("172.31.255.255", "private (172.16.0.0/12)"),
    ("192.168.1.1", "private (192.168.0.0/16)"),
    ("100.64.0.0", "CGNAT shared address space (100.64.0.0/10)"),
    ("100.127.255.255", "CGNAT shared address space (100.64.0.0/10)"),
    ("169.254.169.254", "a cloud metadata endpoint (169.254.169.254/32)"),
    ("169.254.0.1", "link-local (169.254.0.0/16)"),
    ("168.63.129.16", "the Azure WireServer metadata endpoint (168.63.129.16/32)"),
    ("0.0.0.0", "unspecified (0.0.0.0/8)"),
    ("224.0.0.1", "multicast (224.0.0.0/4)"),
    ("239.255.255.250", "multicast (224.0.0.0/4)"),
    ("240.0.0.1", "reserved (240.0.0.0/4)"),
    ("255.255.255.255", "reserved (240.0.0.0/4)"),
    ("192.0.2.1", "reserved for documentation (192.0.2.0/24)"),
    ("198.18.0.1", "reserved for benchmarking (198.18.0.0/15)"),
    ("::1", "loopback (::1/128)"),
    ("::", "unspecified (::/128)"),
    ("::ffff:127.0.0.1", "loopback (127.0.0.0/8), IPv4-mapped"),
    ("::ffff:169.254.169.254", "a cloud metadata endpoint (169.254.169.254/32), IPv4-mapped"),
    ("::ffff:10.1.2.3", "private (10.0.0.0/8), IPv4-mapped"),
    ("::ffff:100.64.0.1", "CGNAT shared address space (100.64.0.0/10), IPv4-mapped"),
    ("fd00:ec2::254", "a cloud metadata endpoint (fd00:ec2::254/128)"),
    ("fe80::", "link-local (fe80::/10)"),
    ("fe80::1%eth0", "link-local (fe80::/10)"),
    ("febf:ffff::1", "link-local (fe80::/10)"),
    ("fc00::", "unique-local private (fc00::/7)"),
    ("fdff:ffff::1", "unique-local private (fc00::/7)"),
    ("ff02::1", "multicast (ff00::/8)"),
    ("2001:db8::1", "reserved for documentation (2001:db8::/32)"),
    ("::127.0.0.1", "reserved (::/8)"),
    ("2002:7f00:1::", "loopback (127.0.0.0/8), 6to4"),
    ("64:ff9b::a9fe:a9fe", "a cloud metadata endpoint (169.254.169.254/32), NAT64"),
]

# public neighbours of the boundaries above: no connection needed, the classifier decides
PUBLIC = [
    "172.15.255.255",
    "172.32.0.0",
    "100.63.255.255",
    "100.128.0.0",
    "9.255.255.255",
    "11.0.0.0",
    "192.167.255.255",
    "192.169.0.0",
    "169.253.255.255",
    "169.255.0.0",
    "126.255.255.255",
    "128.0.0.0",
    "223.255.255.255",
    "8.8.8.8",
    "::ffff:8.8.8.8",
    "2606:4700:4700::1111",
    "fbff:ffff::1",  # just below fc00::/7
    "2a00:1450::1",
    "64:ff9b::808:808",  # NAT64 of a public address
]


@pytest.mark.parametrize(("address", "reason"), FORBIDDEN)
def test_every_forbidden_range_is_named(address, reason):
    assert forbidden_range(address) == reason


@pytest.mark.parametrize("address", PUBLIC)
def test_public_neighbours_of_the_boundaries_are_allowed(address):
    assert forbidden_range(address) is None


def _url(address: str, port: int = 8080) -> str:
    host = address.split("%")[0]
    return f"http://[{host}]:{port}/hook" if ":" in host else f"http://{host}:{port}/hook"


@pytest.mark.parametrize(("address", "reason"), [(a, r) for a, r in FORBIDDEN if "%" not in a])
def test_a_literal_url_in_a_forbidden_range_is_refused_naming_field_host_and_range(address, reason):
    with pytest.raises(OutboundRefused) as refused:
        check_url(_url(address), "webhook url", environ={})
    message = str(refused.value)
    assert message.startswith("webhook url: ") and message.endswith(HINT)
    assert reason in message
    host = _url(address).split("//")[1].rsplit(":", 1)[0].strip("[]")
    assert f"webhook url: {host} is {reason}" == message.removesuffix(HINT)


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://2130706433/", "2130706433"),  # 127.0.0.1 as one integer
        ("http://0x7f000001/", "0x7f000001"),
        ("http://127.1/", "127.1"),
        ("http://0/", "0"),  # 0.0.0.0
        ("http://localhost:8080/", "localhost"),
        ("http://LOCALHOST./", "localhost."),
    ],
)
def test_names_and_odd_forms_are_judged_by_what_they_resolve_to(url, host):
    with pytest.raises(OutboundRefused) as refused:
        check_url(url, "url", environ={})
    pattern = rf"url: {re.escape(host)} resolves to (\S+), which is (.+){re.escape(HINT)}"
    match = re.fullmatch(pattern, str(refused.value))
    assert match, str(refused.value)
    assert forbidden_range(match.group(1)) == match.group(2)
    assert match.group(2).split(" (")[0] in ("loopback", "unspecified")


@pytest.mark.parametrize("url", ["ftp://example.com/", "file:///etc/passwd", "http:///nohost"])
def test_only_http_and_https_with_a_host(url):
    with pytest.raises(OutboundRefused, match="url: an http:// or https:// URL with a host"):
        check_url(url, "url", environ={})


def test_the_allowlist_syntax():
    allow = parse_allowlist(
        " 10.0.0.0/8, 127.0.0.1 ,::1, localhost:8080, [::1]:9000,Hooks.Internal.,"
    )
    assert [str(n) for n in allow.networks] == ["10.0.0.0/8", "127.0.0.1/32", "::1/128"]
    assert allow.hosts == (("localhost", 8080), ("::1", 9000), ("hooks.internal", None))
    assert allow.allows_host("LOCALHOST", 8080) and not allow.allows_host("localhost", 8081)
    assert allow.allows_host("hooks.internal", 1) and allow.allows_host("[::1]", 9000)
    assert allow.allows_address("10.200.0.1") and allow.allows_address("::ffff:10.0.0.1")
    assert not allow.allows_address("11.0.0.1") and not allow.allows_address("127.0.0.2")
    assert parse_allowlist("") == parse_allowlist(" , ") == parse_allowlist(",,")
    assert parse_allowlist("").networks == () and parse_allowlist("").hosts == ()


@pytest.mark.parametrize("entry", ["foo bar", "x:99999", "x:0", "[::1", "a:b:c", "http://x", "*"])
def test_a_malformed_allowlist_entry_refuses_everything_naming_the_variable(entry):
    with pytest.raises(OutboundRefused) as refused:
        parse_allowlist(f"10.0.0.0/8,{entry}")
    assert str(refused.value) == f"{ALLOW_ENV}: {entry!r} is neither a CIDR nor host[:port]"
    with pytest.raises(OutboundRefused, match=ALLOW_ENV):  # fail closed, public URLs too
        check_url("http://93.184.215.14/", "url", environ={ALLOW_ENV: entry})


def test_the_allowlist_lets_through_only_what_it_names():
    by_cidr = {ALLOW_ENV: "127.0.0.0/8"}
    assert check_url("http://127.0.0.1:1234/", "url", by_cidr) == ["127.0.0.1"]
    assert check_url("http://127.9.9.9:1/", "url", by_cidr) == ["127.9.9.9"]
    with pytest.raises(OutboundRefused, match="url: 10.0.0.1 is private"):
        check_url("http://10.0.0.1/", "url", by_cidr)
    by_port = {ALLOW_ENV: "127.0.0.1:1234"}
    assert check_url("http://127.0.0.1:1234/", "url", by_port) == []  # allowed by name
    with pytest.raises(OutboundRefused, match="url: 127.0.0.1 is loopback"):
        check_url("http://127.0.0.1:1235/", "url", by_port)
    by_name = {ALLOW_ENV: "localhost"}
    assert check_url("http://localhost:5/", "url", by_name) == []
    with pytest.raises(OutboundRefused, match="url: 127.0.0.1 is loopback"):
        check_url("http://127.0.0.1:5/", "url", by_name)  # the name, not what it resolves to
    default_port = {ALLOW_ENV: "localhost:443"}
    assert check_url("https://localhost/", "url", default_port) == []
    with pytest.raises(OutboundRefused, match="localhost resolves to"):
        check_url("http://localhost/", "url", default_port)  # port 80
    mapped = {ALLOW_ENV: "127.0.0.1"}  # an IPv4 range covers its IPv4-mapped form
    assert check_url("http://[::ffff:127.0.0.1]:80/", "url", mapped) == ["::ffff:127.0.0.1"]


def _entry(name: str, url: str) -> dict:
    return {"name": name, "url": url, "events": ["*"], "secret_env": "HOOK_SECRET"}


def test_webhook_subscribers_in_forbidden_ranges_are_refused_at_load(tmp_path):
    literal = [(a, r) for a, r in FORBIDDEN if "%" not in a]
    entries = [_entry(f"s{i}", _url(a)) for i, (a, _) in enumerate(literal)]
    entries += [_entry("local", "http://localhost:9/"), _entry("later", "https://hooks.invalid/x")]
    path = tmp_path / "webhooks.yaml"
    path.write_text(json.dumps({"subscribers": entries}))
    subs, errors = load_subscribers(path, environ={"HOOK_SECRET": "s"})
    # a name that does not resolve now is accepted: it is checked at each send
    assert [s.name for s in subs] == ["later"]
    assert len(literal) > 30 and len(errors) == len(literal) + 1
    for i, ((address, reason), error) in enumerate(zip(literal, errors[:-1], strict=True)):
        host = _url(address).split("//")[1].rsplit(":", 1)[0].strip("[]")
        assert error == f"{path}: subscribers[{i}] ('s{i}'): url: {host} is {reason}{HINT}"
    assert errors[-1].startswith(f"{path}: subscribers[{len(literal)}] ('local'): url: localhost")
    assert "which is loopback" in errors[-1]


def test_an_allowlisted_subscriber_loads(tmp_path):
    path = tmp_path / "webhooks.yaml"
    path.write_text(json.dumps({"subscribers": [_entry("ops", "http://127.0.0.1:9/")]}))
    subs, errors = load_subscribers(path, environ={"HOOK_SECRET": "s", ALLOW_ENV: "127.0.0.1:9"})
    assert ([s.url for s in subs], errors) == (["http://127.0.0.1:9/"], [])
    subs, errors = load_subscribers(path, environ={"HOOK_SECRET": "s", ALLOW_ENV: "127.0.0.1:10"})
    assert subs == [] and len(errors) == 1 and "url: 127.0.0.1 is loopback" in errors[0]
