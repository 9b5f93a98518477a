"""A real `redis-server` speaking only TLS on a loopback port, with a CA made for the test.

`make_pki` writes (with the `cryptography` package) a CA, a server certificate for
127.0.0.1 and localhost, a client certificate from the same CA and one from a rogue CA.
`tls_redis_server` starts `redis-server` on them: no plaintext port (`--port 0`), a
password, and `tls-auth-clients optional` (a client may present a certificate, which is
then verified; the usual managed-Redis setup is TLS plus a password without one).

Outside CI a missing `redis-server`, or one built without TLS, skips; under CI=true it fails.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from support import free_port

IN_CI = os.environ.get("CI", "").lower() == "true"
# URL-special characters and a space: the password must survive both connection string forms
PASSWORD = "tls-s3cret/@:%+ pw#1"


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_cert: Path  # a client certificate from another CA
    rogue_key: Path


@dataclass(frozen=True)
class TLSRedis:
    host: str
    port: int
    password: str
    pki: Pki
    log: Path

    def url(self, db: int = 0, *, ca: bool = True, **query: str) -> str:
        """`rediss://:password@host:port/db?ssl_ca_certs=...` (the CA unless `ca=False`)."""
        params = {"ssl_ca_certs": str(self.pki.ca)} if ca else {}
        params |= query
        tail = "&".join(f"{k}={quote(v, safe='/')}" for k, v in params.items())
        base = f"rediss://:{quote(self.password, safe='')}@{self.host}:{self.port}/{db}"
        return f"{base}?{tail}" if tail else base

    def feast_form(self, db: int = 0, **options: str) -> str:
        """`host:port,db=N,password=...,ssl=true,ssl_ca_certs=...` (Feast's form)."""
        parts = [f"{self.host}:{self.port}", f"db={db}", f"password={self.password}"]
        parts += ["ssl=true", f"ssl_ca_certs={self.pki.ca}"]
        return ",".join(parts + [f"{k}={v}" for k, v in options.items()])


def make_pki(directory: Path) -> Pki:
    """A CA, its server and client certificates, and a client certificate of a rogue CA."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca = _ca("clipflow test CA")
    rogue_ca_key, rogue_ca = _ca("rogue CA")
    server_key, server = _leaf("127.0.0.1", ca_key, ca, server=True)
    client_key, client = _leaf("clipflow client", ca_key, ca, server=False)
    rogue_key, rogue = _leaf("clipflow client", rogue_ca_key, rogue_ca, server=False)
    files = {
        "ca": _write_cert(directory / "ca.pem", ca),
        "server_cert": _write_cert(directory / "server.pem", server),
        "server_key": _write_key(directory / "server.key", server_key),
        "client_cert": _write_cert(directory / "client.pem", client),
        "client_key": _write_key(directory / "client.key", client_key),
        "rogue_cert": _write_cert(directory / "rogue.pem", rogue),
        "rogue_key": _write_key(directory / "rogue.key", rogue_key),
    }
    return Pki(**files)


@contextmanager
def tls_redis_server(directory: Path, password: str = PASSWORD) -> Iterator[TLSRedis]:
    """`redis-server` on a free loopback port, TLS only; stopped when the block ends."""
    binary = shutil.which("redis-server")
    if binary is None:
        _missing("redis-server not found: install Redis built with TLS (apt-get install redis)")
    pki = make_pki(directory / "pki")
    port = free_port()
    log = directory / "redis.log"
    conf = directory / "redis.conf"  # the password in a 0600 file, not on the command line
    settings = {
        "port": "0",
        "tls-port": str(port),
        "bind": "127.0.0.1",
        "tls-cert-file": str(pki.server_cert),
        "tls-key-file": str(pki.server_key),
        "tls-ca-cert-file": str(pki.ca),
        "tls-auth-clients": "optional",
        "requirepass": password,
        "save": "",
        "appendonly": "no",
        "daemonize": "no",
        "dir": str(directory),
        "logfile": str(log),
    }
    conf.write_text("".join(f"{k} {_quoted(v)}\n" for k, v in settings.items()))
    conf.chmod(0o600)
    proc = subprocess.Popen(
        [binary, str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    server = TLSRedis("127.0.0.1", port, password, pki, log)
    try:
        _wait_ready(proc, server)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _wait_ready(proc: subprocess.Popen, server: TLSRedis) -> None:
    import redis

    deadline = time.monotonic() + 15
    while True:
        if proc.poll() is not None:
            tail = server.log.read_text()[-2000:] if server.log.exists() else ""
            _missing(f"redis-server with TLS exited ({proc.returncode}); its log ends:\n{tail}")
        try:
            with redis.Redis(
                host=server.host,
                port=server.port,
                password=server.password,
                ssl=True,
                ssl_ca_certs=str(server.pki.ca),
                socket_timeout=1,
            ) as client:
                if client.ping():
                    return
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"redis-server with TLS did not answer on port {server.port}")
        time.sleep(0.05)


def _missing(msg: str) -> None:
    if IN_CI:
        pytest.fail(msg)
    pytest.skip(msg)


def _quoted(value: str) -> str:
    """A redis.conf argument: double-quoted, backslashes and quotes escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# -- certificates ----------------------------------------------------------------------------


def _name(common_name: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject: str, issuer, public_key):
    from cryptography import x509

    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _ca(common_name: str):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    usage = x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
        encipher_only=False, decipher_only=False,
    )  # fmt: skip
    cert = (
        _builder(common_name, _name(common_name), key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage, critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _leaf(common_name: str, ca_key, ca, *, server: bool):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    key = ec.generate_private_key(ec.SECP256R1())
    purpose = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    builder = (
        _builder(common_name, ca.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
        .add_extension(aki, critical=False)
    )
    if server:
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def _write_cert(path: Path, cert) -> Path:
    from cryptography.hazmat.primitives import serialization

    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _write_key(path: Path, key) -> Path:
    from cryptography.hazmat.primitives import serialization

    path.touch(mode=0o600)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path
