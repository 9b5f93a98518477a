"""A loopback Iceberg REST catalog for the tests (the API of Polaris, Nessie, Glue's REST
endpoint: a third-party web API, so a real HTTP server here): the REST routes clipflow's
warehouse uses, each answered by pyiceberg's own SQL catalog on a SQLite file, with pyiceberg's
own request and response models; it wants `Authorization: Bearer <token>` on every call
(the token given, or one obtained by OAuth2 client credentials at `/v1/oauth/tokens` with
`client`), and counts the calls by route (what the tests check went through REST)."""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl

_NS = r"/v1/namespaces/(?P<ns>[^/]+)"
ROUTES = [
    ("GET", re.compile(r"/v1/config"), "config"),
    ("POST", re.compile(r"/v1/namespaces"), "create_namespace"),
    ("GET", re.compile(_NS), "load_namespace"),
    ("HEAD", re.compile(_NS), "load_namespace"),
    ("GET", re.compile(_NS + "/tables"), "list_tables"),
    ("POST", re.compile(_NS + "/tables"), "create_table"),
    ("GET", re.compile(_NS + r"/tables/(?P<table>[^/]+)"), "load_table"),
    ("HEAD", re.compile(_NS + r"/tables/(?P<table>[^/]+)"), "load_table"),
    ("POST", re.compile(_NS + r"/tables/(?P<table>[^/]+)"), "commit_table"),
]


class RestCatalogServer:
    def __init__(self, catalog, token: str) -> None:
        self.catalog, self.token, self.calls = catalog, token, Counter()
        self.uri = ""
        self.client = ("clipflow", f"secret-of-{token}")  # OAuth2 client id and secret

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, dict | None]:
        from pyiceberg.catalog.rest import CreateTableRequest
        from pyiceberg.exceptions import (
            CommitFailedException,
            NamespaceAlreadyExistsError,
            NoSuchNamespaceError,
            NoSuchTableError,
        )
        from pyiceberg.table import CommitTableRequest

        found = [(name, m) for verb, pattern, name in ROUTES
                 if verb == method and (m := pattern.fullmatch(path))]  # fmt: skip
        if not found:
            return 404, _error(f"no route {method} {path}", "NoSuchRouteException", 404)
        name, m = found[0]
        self.calls[name] += 1
        args = m.groupdict()
        ident = (args.get("ns"), args.get("table"))
        try:
            if name == "config":
                return 200, {"defaults": {}, "overrides": {}}
            if name == "create_namespace":
                ns = json.loads(body)["namespace"]
                self.catalog.create_namespace(tuple(ns))
                return 200, {"namespace": ns, "properties": {}}
            if name == "load_namespace":
                self.catalog.load_namespace_properties(ident[0])
                return 200, {"namespace": [ident[0]], "properties": {}}
            if name == "list_tables":
                ids = self.catalog.list_tables(ident[0])
                return 200, {"identifiers": [{"namespace": [n], "name": t} for n, t in ids]}
            if name == "create_table":
                fields = {"location": None, "partition-spec": None, "write-order": None}
                req = CreateTableRequest.model_validate(fields | json.loads(body))  # optional
                tbl = self.catalog.create_table((ident[0], req.name), req.table_schema,
                                                location=req.location,
                                                partition_spec=req.partition_spec,
                                                properties=req.properties)  # fmt: skip
                return 200, _table(tbl)
            if name == "load_table":
                return 200, _table(self.catalog.load_table(ident))
            req = CommitTableRequest.model_validate_json(body)
            tbl = self.catalog.load_table(ident)
            out = self.catalog.commit_table(tbl, req.requirements, req.updates)
            return 200, json.loads(out.model_dump_json(by_alias=True))
        except (NoSuchTableError, NoSuchNamespaceError) as e:
            kind = "NoSuchTableException" if name.endswith("table") else "NoSuchNamespaceException"
            return 404, _error(str(e), kind, 404)
        except NamespaceAlreadyExistsError as e:
            return 409, _error(str(e), "AlreadyExistsException", 409)
        except CommitFailedException as e:
            return 409, _error(str(e), "CommitFailedException", 409)


def _table(tbl) -> dict:
    return {"metadata-location": tbl.metadata_location,
            "metadata": json.loads(tbl.metadata.model_dump_json(by_alias=True)),
            "config": {}}  # fmt: skip


def _error(message: str, kind: str, code: int) -> dict:
    return {"error": {"message": message, "type": kind, "code": code}}


@contextmanager
def rest_catalog(scratch: Path, warehouse: str, props: dict[str, str], token: str
                 ) -> Iterator[RestCatalogServer]:  # fmt: skip
    """A REST catalog on a free loopback port (its `uri` set) over a SQLite SQL catalog
    under `scratch` whose tables live under `warehouse` (S3 through `props`)."""
    from pyiceberg.catalog.sql import SqlCatalog

    sql = SqlCatalog("rest", uri=f"sqlite:///{scratch / 'rest-catalog.db'}",
                     warehouse=warehouse, **props)  # fmt: skip
    server = RestCatalogServer(sql, token)
    lock = threading.Lock()  # SQLite: one request at a time is enough for the tests

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path == "/v1/oauth/tokens":  # OAuth2 client credentials -> the token
                form = dict(parse_qsl(body.decode()))
                if (form.get("client_id"), form.get("client_secret")) == server.client:
                    code, out = 200, {"access_token": server.token, "token_type": "bearer",
                                      "issued_token_type":
                                          "urn:ietf:params:oauth:token-type:access_token",
                                      "expires_in": 3600}  # fmt: skip
                else:
                    code, out = 401, {"error": "invalid_client", "error_description": "no"}
            elif self.headers.get("Authorization") != f"Bearer {server.token}":
                code, out = 401, _error("bad token", "NotAuthorizedException", 401)
            else:
                with lock:
                    try:
                        code, out = server.handle(self.command, self.path.split("?")[0], body)
                    except Exception as e:  # noqa: BLE001  the client shows it, as a server would
                        code, out = 500, _error(f"{type(e).__name__}: {e}", "ServerError", 500)
            data = b"" if self.command == "HEAD" or out is None else json.dumps(out).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_HEAD = _serve

        def log_message(self, *args) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.uri = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
