"""The one parser of CLIPFLOW_REDIS: both forms, TLS verified unless the string says not,
every part kept, bad parts named and never a password."""

import pytest

from models.core.redis_url import RedisTarget, is_url, parse

SECRET = "Hunter2-s3cret"


def test_every_part_is_kept():
    t = parse("cache.internal:6380,password=s3cr=t,username=app,db=3,ssl=true,ssl_ca_certs=/ca.pem")
    assert t.kwargs() == {
        "host": "cache.internal",
        "port": 6380,
        "db": 3,
        "password": "s3cr=t",  # only the first '=' splits
        "username": "app",
        "ssl": True,
        "ssl_cert_reqs": "required",
        "ssl_check_hostname": True,
        "ssl_ca_certs": "/ca.pem",
    }
    assert "s3cr" not in repr(t)
    assert "s3cr" not in str(t)


def test_the_url_form_is_the_same_target_as_feasts_form():
    url = "rediss://app:s3cr%3Dt@cache.internal:6380/3?ssl_ca_certs=/ca.pem"
    feast = "cache.internal:6380,password=s3cr=t,username=app,db=3,ssl=true,ssl_ca_certs=/ca.pem"
    assert parse(url) == parse(feast)
    assert parse("redis://cache.internal:6380/3") == parse("cache.internal:6380,db=3")
    assert parse("REDISS://h") == parse("h,ssl=true")


def test_url_parts_are_percent_decoded():
    t = parse("rediss://:p%40ss%2Cw%3Ard%2F%25@127.0.0.1/0?ssl_ca_certs=/my%20ca.pem")
    assert (t.password, t.username, t.ssl_ca_certs) == ("p@ss,w:rd/%", None, "/my ca.pem")
    assert parse("rediss://user@h").kwargs()["username"] == "user"
    assert parse("rediss://[::1]:7000").kwargs()["host"] == "::1"


def test_verification_is_on_unless_the_string_turns_it_off():
    for conn in ("rediss://h", "h,ssl=true", "h,ssl=TRUE"):
        kw = parse(conn).kwargs()
        assert (kw["ssl"], kw["ssl_cert_reqs"], kw["ssl_check_hostname"]) == (
            True,
            "required",
            True,
        )
    kw = parse("rediss://h?ssl_cert_reqs=none").kwargs()
    assert (kw["ssl_cert_reqs"], kw["ssl_check_hostname"]) == ("none", False)
    assert parse("rediss://h?ssl_check_hostname=false").kwargs()["ssl_check_hostname"] is False


def test_a_client_certificate_is_passed_on():
    kw = parse("h,ssl=true,ssl_certfile=/c.pem,ssl_keyfile=/k.pem").kwargs()
    assert (kw["ssl_certfile"], kw["ssl_keyfile"]) == ("/c.pem", "/k.pem")


def test_defaults_and_no_tls():
    kw = parse("127.0.0.1").kwargs()
    assert (kw["host"], kw["port"], kw["db"], kw["password"]) == ("127.0.0.1", 6379, 0, None)
    assert not any(k.startswith("ssl") for k in kw)
    assert not any(k.startswith("ssl") for k in parse("redis://h:1/2").kwargs())
    assert parse("[::1]:7000").kwargs()["host"] == "::1"
    assert parse("rediss://:@h").password is None


def test_only_a_scheme_makes_a_url():
    assert is_url("rediss://h") and is_url(" redis://h")
    assert not is_url("h:1,password=a://b")
    assert parse("h:1,password=a://b").password == "a://b"


@pytest.mark.parametrize(
    ("connection", "names"),
    [
        ("h:notaport", "port"),
        ("h:0", "out of range"),
        ("h:6379,db=-1", "out of range"),
        ("h:6379,colour=red", "'colour'"),
        ("h:6379,password", "option 1 is not name=value"),
        ("h;FLUSHALL:6379", "invalid host"),
        ("h:6379,ssl=yes", "ssl must be true or false"),
        ("h:6379,ssl_ca_certs=/ca.pem", "ssl_ca_certs given without TLS"),
        ("redis://h?ssl_ca_certs=/ca.pem", "ssl_ca_certs given without TLS"),
        ("h:6379,ssl=false,ssl_cert_reqs=none", "ssl_cert_reqs given without TLS"),
        ("rediss://h?ssl_cert_reqs=optional", "ssl_cert_reqs must be one of required, none"),
        ("rediss://h?ssl_check_hostname=no", "ssl_check_hostname must be true or false"),
        ("rediss://h?ssl_certfile=/c.pem", "ssl_certfile and ssl_keyfile go together"),
        ("rediss://h?ssl_ca_certs=/a&ssl_ca_certs=/b", "'ssl_ca_certs' given twice"),
        ("h,db=1,db=2", "'db' given twice"),
        ("rediss://h?db=2", "'db' belongs in the URL"),
        ("rediss://h?ssl=false", "'ssl' belongs in the URL"),
        ("rediss://h?tls=1", "'tls'"),
        ("http://h", "scheme 'http'"),
        ("unix:///tmp/redis.sock", "scheme 'unix'"),
        ("rediss://h/x", "port and db must be integers"),
        ("rediss://h#frag", "fragment"),
    ],
)
def test_bad_strings_are_refused_naming_the_part(connection, names):
    with pytest.raises(ValueError, match="CLIPFLOW_REDIS") as e:
        parse(connection)
    assert names in str(e.value)


@pytest.mark.parametrize(
    "connection",
    [
        f"h:6379,password={SECRET},colour=red",
        f"h:6379,password=ab,{SECRET}",  # a comma in a password: the rest is not an option
        f"h:6379,password=ab,{SECRET}=x",
        f"h:6379,password={SECRET},ssl_ca_certs=/ca.pem",
        f"h:notaport,password={SECRET}",
        f"rediss://:{SECRET}@h:notaport",
        f"rediss://:{SECRET}@h/notadb",
        f"rediss://:{SECRET[:4]}/{SECRET[4:]}@h",  # an unencoded '/' ends the host part
        f"rediss://:{SECRET[:4]}?{SECRET[4:]}@h",  # an unencoded '?' starts the query
        f"rediss://:{SECRET[:4]}#{SECRET[4:]}@h",
        f"redis://:{SECRET}@h?ssl_ca_certs=/ca.pem",
        f"rediss://:{SECRET}@h?ssl_cert_reqs=optional",
        f"rediss://:{SECRET}@h;x",
    ],
)
def test_errors_never_show_the_password(connection):
    with pytest.raises(ValueError, match="CLIPFLOW_REDIS") as e:
        parse(connection)
    for piece in (SECRET, SECRET[:4], SECRET[4:]):
        assert piece not in str(e.value)


@pytest.mark.parametrize(
    "connection",
    [
        "h:6380,db=3",
        "h:6380,db=1,username=app,password=s3cr=t,ssl=true,ssl_ca_certs=/ca.pem",
        "rediss://:pw@h?ssl_cert_reqs=none",
        "rediss://h?ssl_certfile=/c&ssl_keyfile=/k&ssl_check_hostname=false",
    ],
)
def test_feasts_form_renders_the_same_target(connection):
    t = parse(connection)
    assert parse(t.feast_string()).kwargs() == t.kwargs()


@pytest.mark.parametrize("password", ["12345", "true", "null", '"quoted"', "a,b"])
def test_feasts_form_refuses_what_feast_would_misread(password):
    with pytest.raises(ValueError, match="'password'") as e:
        RedisTarget(password=password).feast_string()
    assert password not in str(e.value)


# -- a Redis Cluster (#21) -------------------------------------------------------------------


def test_a_cluster_url_names_its_startup_nodes():
    t = parse(f"rediss-cluster://app:{SECRET}@n1.internal:7000,[::1]:7001,n3:7002"
              "?ssl_ca_certs=/ca.pem")  # fmt: skip
    assert t.cluster and t.nodes == (("n1.internal", 7000), ("[::1]", 7001), ("n3", 7002))
    assert (t.host, t.port, t.ssl, t.password, t.username) == ("n1.internal", 7000, True,
                                                               SECRET, "app")  # fmt: skip
    # a cluster client finds host, port and db itself: only the connections' options
    assert t.kwargs() == {"password": SECRET, "username": "app", "ssl": True,
                          "ssl_cert_reqs": "required", "ssl_check_hostname": True,
                          "ssl_ca_certs": "/ca.pem"}  # fmt: skip
    assert SECRET not in repr(t) and "n1.internal:7000,[::1]:7001,n3:7002" in repr(t)
    plain = parse("redis-cluster://127.0.0.1:7000")
    assert plain.cluster and not plain.ssl and plain.nodes == (("127.0.0.1", 7000),)
    assert not parse("redis://127.0.0.1:7000").cluster


def test_feasts_form_of_a_cluster_lists_every_node():
    t = parse("redis-cluster://:pw@a:7000,b:7001")
    assert t.feast_string() == "a:7000,b:7001,password=pw"
    # Feast's own form names a cluster only beside `redis_type: redis_cluster`
    assert parse(t.feast_string(), cluster=True) == t
    assert parse("redis://a:7000", cluster=True).nodes == (("a", 7000),)
    assert not parse("a:7000,password=pw").cluster


@pytest.mark.parametrize(
    ("connection", "names"),
    [
        ("redis://a:7000,b:7001", "several hosts need redis-cluster://"),
        ("redis-cluster://a:7000,a:7000", "named twice"),
        ("redis-cluster://a:7000/1", "database 0 only"),
        ("redis-cluster://a:7000,b:x", "port and db must be integers"),
        ("redis-cluster://a:7000,b;c:7001", "invalid host"),
        ("redis-cluster://a:7000?ssl_ca_certs=/ca.pem", "without TLS"),
        ("a:7000,b:7001", "option 1 is not name=value"),
    ],
)
def test_bad_cluster_strings_are_refused_naming_the_part(connection, names):
    with pytest.raises(ValueError, match="CLIPFLOW_REDIS") as e:
        parse(connection)
    assert names in str(e.value)


def test_a_cluster_gets_a_cluster_client(redis_cluster):
    from redis.cluster import RedisCluster

    from models.core.redis_url import redis_client

    with redis_client(redis_cluster["connection_string"], socket_timeout=2) as c:
        assert isinstance(c, RedisCluster)
        assert sorted(n.port for n in c.get_primaries()) == sorted(redis_cluster["ports"])
        assert c.get_primaries()[0].redis_connection.connection_pool.connection_kwargs[
            "socket_timeout"] == 2  # fmt: skip


def test_a_cluster_is_ok_only_when_every_node_answers(tmp_path, monkeypatch):
    """`ping` (behind `/healthz` and the online resource's check) asks every primary: a
    node down that is not the client's default node (the one a plain PING asks) is down."""
    import redis

    from assets.resources import FeastResource
    from bench.feast_env import redis_cluster
    from models.core.redis_url import ping, redis_client
    from pipelines.serve.app import _ping_redis

    with redis_cluster(tmp_path) as ports:
        url = "redis-cluster://" + ",".join(f"127.0.0.1:{p}" for p in ports)
        monkeypatch.setenv("CLIPFLOW_HOME", str(tmp_path / "home"))
        monkeypatch.setenv("CLIPFLOW_REDIS", url)
        resource = FeastResource()
        assert _ping_redis(url) == "ok" and resource.ping_online() is None
        with redis_client(url, socket_timeout=2) as client:
            ping(client)
            default = client.get_default_node().port
            other = next(p for p in ports if p != default)
            assert client.ping()  # a plain PING asks the default node only
            with redis.Redis(host="127.0.0.1", port=other) as node:
                node.shutdown(nosave=True)
            assert client.ping()  # ... which still answers
            with pytest.raises(redis.RedisError):
                ping(client)
        assert _ping_redis(url) == "down"
        assert "Redis online store unreachable" in resource.ping_online()
