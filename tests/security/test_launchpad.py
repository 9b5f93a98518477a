"""The launchpad cannot inject. Every run-config field of every job, enumerated from the
Definitions (a new field is tried too), is launched with hostile values: a string field
refuses each with an error naming it before anything uses it, unless it is listed in
ACCEPTS with why any such string is harmless; a typed field (number, bool, enum) refuses
them in Dagster's own config check. Nothing is executed: the SQL-ish value's COPY never
writes its file."""

from __future__ import annotations

import dagster as dg
import pytest
from fake_metadata_api import FakeMetadataApi

from assets.resources import VideoMetadataResource
from models.integrations.metadata_api import KEY_ENV, URL_ENV
from pipelines.definitions import defs

HOSTILE = {
    "sql": "1GB'; COPY (SELECT 42) TO '{owned}'; SELECT '",
    "path": "../../etc",
    "nul": "/tmp/a\x00b",
    "newline": "/tmp/a\nb",
    "url": "http://attacker.example:8080/x",
}
STRINGS = {"String", "StringSourceType"}
# string fields that take some hostile values, and why each such value is harmless
ACCEPTS = {
    "resources.metadata_api.config.base_url": (
        {"url"},
        "another host gets no key: CLIPFLOW_METADATA_API_KEY goes to CLIPFLOW_METADATA_URL only",
    ),
    "ops.clip_quality_model.config.retrain_trigger": (
        {"sql", "path", "url"},
        "free text: an MLflow tag value and a log line, never SQL, a path or a shell",
    ),
    "ops.push_fresh_features.config.files": (
        set(HOSTILE),
        "a path is read only when it equals a file the landing listing found",
    ),
}
FRAMEWORK = {  # Dagster's own fields: not clipflow's run config
    "execution.config.marker_to_close": "deprecated; Dagster's in-process executor ignores it",
    "resources.io_manager.config.base_dir": "no clipflow output goes through the IO manager",
}


def _leaves(config_type, path=()):
    fields = getattr(config_type, "fields", None)
    if fields:
        for name, field in fields.items():
            yield from _leaves(field.config_type, (*path, name))
    elif config_type.kind.name == "NONEABLE":
        yield from _leaves(config_type.inner_type, path)
    else:
        yield ".".join(path), config_type


def _fields() -> dict[str, tuple[str, object]]:
    """Every run-config leaf of every job: path -> (a job that has it, its config type)."""
    out = {}
    jobs = sorted(defs.resolve_all_job_defs(), key=lambda j: j.name.startswith("__"))
    for job in jobs:  # named jobs first: a field's job is one a person launches
        for path, config_type in _leaves(job.run_config_schema.config_type):
            if path.startswith(("resources.", "ops.", "execution.")) and path not in FRAMEWORK:
                out.setdefault(path, (job.name, config_type))
    return out


FIELDS = _fields()


def _kind(config_type) -> str:
    name = config_type.kind.name
    if name == "ARRAY":
        return "list" if _kind(config_type.inner_type) == "string" else "typed"
    given = getattr(config_type, "given_name", None) or config_type.key
    return "string" if name in ("SCALAR", "SCALAR_UNION") and given in STRINGS else name.lower()


def _strings(prefix: str) -> list[str]:
    return [p for p, (_, t) in FIELDS.items() if p.startswith(prefix) and _kind(t) in STR_KINDS]


STR_KINDS = ("string", "list")
# typed leaves: numbers, bools, enums (`any` is the config of an asset that takes none: it
# ignores what it is given; `strict_shape` an empty mapping such as `retries.enabled`)
TYPED = sorted(
    p for p, (_, t) in FIELDS.items() if _kind(t) not in (*STR_KINDS, "any", "strict_shape")
)


def _hostile(kind: str, tmp_path) -> str:
    return HOSTILE[kind].format(owned=tmp_path / "owned.csv")


def _error_text(*events) -> str:
    """Every error message (and its causes) of `events`."""
    out = []
    for event in events:
        err = getattr(event.event_specific_data, "error", None)
        while err is not None:
            out.append(err.message)
            err = err.cause
    return "\n".join(out)


def _named(text: str, field: str) -> bool:
    """Whether a pydantic error in `text` names `field` (its own line in the report)."""
    return any(line.strip() == field for line in text.splitlines())


def test_the_fields_are_the_ones_this_test_knows():
    strings = _strings("")
    assert "resources.warehouse.config.memory_limit" in strings
    assert set(ACCEPTS) <= set(strings)
    secrets = [p for p in FIELDS if any(w in p for w in ("key", "secret", "password", "token"))]
    assert secrets == [] and "resources.events.config.redis" not in FIELDS  # deployment only


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_every_resource_string_is_refused_at_launch_naming_the_field(kind, tmp_path):
    """Every string field of every resource set to a hostile value, each resource built
    from that run config the way a run builds it (`build_resources`: the same pydantic
    validation, before any asset could use the value)."""
    value = _hostile(kind, tmp_path)
    by_key: dict[str, list[str]] = {}
    for path in _strings("resources."):
        by_key.setdefault(path.split(".")[1], []).append(path.split(".")[-1])
    for key, fields in by_key.items():
        config = {key: {"config": dict.fromkeys(fields, value)}}
        refused = [
            f for f in fields if kind not in ACCEPTS.get(f"resources.{key}.config.{f}", ({},))[0]
        ]
        try:
            with dg.build_resources({key: defs.resources[key]}, resource_config=config):
                text = ""
        except dg.DagsterResourceFunctionError as e:
            text = str(e.__cause__)
        assert [f for f in fields if _named(text, f)] == refused, (key, text[:500])
    assert not (tmp_path / "owned.csv").exists()


def test_ingest_job_with_an_injected_memory_limit_fails_naming_it_and_runs_nothing(tmp_path, home):
    """The issue's attack, launched: the run fails as it builds the warehouse, naming
    `memory_limit`; no step runs and the COPY writes nothing."""
    value = _hostile("sql", tmp_path)
    result = defs.resolve_job_def("ingest_job").execute_in_process(
        run_config={"resources": {"warehouse": {"config": {"memory_limit": value}}}},
        partition_key="2026-03-01",
        raise_on_error=False,
    )
    assert not result.success
    failures = [e for e in result.all_events if e.event_type_value == "RESOURCE_INIT_FAILURE"]
    assert failures and _named(_error_text(failures[0]), "memory_limit")
    assert not [e for e in result.all_events if e.event_type_value == "STEP_SUCCESS"]
    assert result.get_asset_materialization_events() == []
    assert not (tmp_path / "owned.csv").exists()


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_every_op_string_is_refused_at_launch_naming_the_field(kind, tmp_path, home):
    value = _hostile(kind, tmp_path)
    by_op: dict[str, list[str]] = {}
    for path in _strings("ops."):
        if path not in ("ops.push_fresh_features.config.files",):  # ran for real below
            by_op.setdefault(path.split(".")[1], []).append(path)
    for op, paths in by_op.items():
        job = defs.resolve_job_def(FIELDS[paths[0]][0])
        fields = {p.split(".")[-1]: value for p in paths}
        result = job.execute_in_process(
            run_config={"ops": {op: {"config": fields}}},
            partition_key="2026-03-01",
            asset_selection=[dg.AssetKey(op)],
            raise_on_error=False,
        )
        text = _error_text(*[e for e in result.all_events if e.step_key == op])
        for path in paths:
            refused = kind not in ACCEPTS.get(path, (set(),))[0]
            assert _named(text, path.split(".")[-1]) == refused, (path, text[:500])
        assert "validation error" in text  # the config, not the body, stopped the step
    assert not (tmp_path / "owned.csv").exists()


def test_online_push_reads_only_listed_landing_files(tmp_path, home):
    landing = tmp_path / "landing"
    (landing / "engagement").mkdir(parents=True)
    (tmp_path / "secret.csv").write_text("clip_id,views\nstolen,1\n")
    files = [_hostile(k, tmp_path) for k in HOSTILE] + [str(tmp_path / "secret.csv")]
    job = defs.resolve_job_def("online_push_job")
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(
            run_config={
                "ops": {"push_fresh_features": {"config": {"files": files}}},
                "resources": {"landing": {"config": {"landing_dir": str(landing)}}},
            },
            instance=instance,
        )
        logs = [e.user_message for e in instance.all_logs(result.run_id)]
    assert result.success
    assert any("6 path(s) not in the landing dir" in m for m in logs)
    assert any("from 0 file(s)" in m for m in logs)
    assert not (tmp_path / "owned.csv").exists()


@pytest.mark.parametrize("path", TYPED)
def test_typed_fields_refuse_a_string_in_dagsters_own_check(path, tmp_path):
    job_name, _ = FIELDS[path]
    run_config: dict = {}
    node = run_config
    *parents, leaf = path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = _hostile("sql", tmp_path)
    with pytest.raises(dg.DagsterInvalidConfigError) as e:
        dg.validate_run_config(defs.resolve_job_def(job_name), run_config)
    assert ":".join(["root", *path.split(".")]) in str(e.value)


@pytest.mark.parametrize(
    ("limit", "ok"),
    [
        ("4GB", True),
        ("4 GB", True),
        ("0.5GB", True),
        ("512MiB", True),
        ("", True),
        ("4GBx", False),
        ("-1GB", False),
        ("4  GB", False),
        ("4 gb", False),
        ("4GB;", False),
    ],
)
def test_memory_limit_boundaries(limit, ok):
    resource = type(defs.resources["warehouse"])
    if ok:
        assert resource(memory_limit=limit).memory_limit == limit
    else:
        with pytest.raises(ValueError, match="memory_limit"):
            resource(memory_limit=limit)


def test_the_metadata_key_goes_only_to_the_configured_url(monkeypatch):
    monkeypatch.setenv("CLIPFLOW_OUTBOUND_ALLOW", "127.0.0.1")  # the fakes listen on loopback
    with FakeMetadataApi() as configured, FakeMetadataApi() as other:
        monkeypatch.setenv(URL_ENV, configured.url)
        monkeypatch.setenv(KEY_ENV, "the-key")
        fast = {"max_retries": 0, "timeout_s": 2.0, "requests_per_second": 1000.0}
        VideoMetadataResource(**fast).fetch(["v1"])
        VideoMetadataResource(base_url=configured.url + "/", **fast).fetch(["v1"])
        VideoMetadataResource(base_url=other.url, **fast).fetch(["v1"])
    assert {r.authorization for r in configured.requests} == {"Bearer the-key"}
    assert other.requests and {r.authorization for r in other.requests} == {None}
