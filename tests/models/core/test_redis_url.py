"""The one parser of CLIPFLOW_REDIS keeps db, password, user and TLS, and names bad parts."""

import pytest

from models.core.redis_url import parse


def test_every_part_is_kept():
    t = parse("cache.internal:6380,password=s3cr=t,username=app,db=3,ssl=true,ssl_ca_certs=/ca.pem")
    assert t.kwargs() == {
        "host": "cache.internal",
        "port": 6380,
        "db": 3,
        "password": "s3cr=t",  # only the first '=' splits
        "username": "app",
        "ssl": True,
        "ssl_ca_certs": "/ca.pem",
    }
    assert "s3cr" not in repr(t)


def test_defaults_and_no_tls():
    kw = parse("127.0.0.1").kwargs()
    assert (kw["host"], kw["port"], kw["db"], kw["password"]) == ("127.0.0.1", 6379, 0, None)
    assert "ssl" not in kw
    assert parse("[::1]:7000").kwargs()["host"] == "::1"


@pytest.mark.parametrize(
    ("connection", "names"),
    [
        ("h:notaport", "port"),
        ("h:0", "out of range"),
        ("h:6379,db=-1", "out of range"),
        ("h:6379,colour=red", "'colour'"),
        ("h:6379,password", "'password'"),
        ("h;FLUSHALL:6379", "invalid host"),
    ],
)
def test_bad_strings_are_refused_naming_the_part(connection, names):
    with pytest.raises(ValueError, match="CLIPFLOW_REDIS") as e:
        parse(connection)
    assert names in str(e.value)
