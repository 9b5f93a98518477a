"""Variant assignment, for any experiment, users and weights: the documented hash, the same
answer on every call, batch and process, each variant's share within a binomial tolerance of
its weight, and the lowest buckets (the first variant) are the control."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from models.experiments.config import (
    SAFE_ID,
    ExperimentConfig,
    assign_variant,
    assign_variants,
    variants_for_buckets,
)

USERS = 100_000
SIGMAS = 5.0
ROOT = Path(__file__).resolve().parents[3]

ids = st.text(max_size=12)
experiment_ids = st.from_regex(SAFE_ID, fullmatch=True).filter(lambda s: len(s) <= 24)


@st.composite
def weights(draw) -> dict[str, float]:
    """2 to 6 distinct variant names with positive weights that sum to 1."""
    # any one line of printable text (the config refuses control characters: one log line)
    printable = st.characters(blacklist_categories=("Cc", "Cs"))
    name = st.text(printable, min_size=1, max_size=8).filter(str.strip)
    names = draw(st.lists(name, min_size=2, max_size=6, unique=True))
    raw = draw(st.lists(st.integers(1, 1000), min_size=len(names), max_size=len(names)))
    return {n: r / sum(raw) for n, r in zip(names, raw, strict=True)}


def documented_variant(experiment_id: str, user_id: str, variants: dict[str, float]) -> str:
    """The config module's docstring, spelled out: sha256(f"{experiment}:{user}")[:8] as a
    big-endian integer over 2**64, then the first variant whose cumulative weight exceeds it."""
    digest = hashlib.sha256(f"{experiment_id}:{user_id}".encode()).digest()
    bucket = int.from_bytes(digest[:8], "big") / 2**64
    cumulative = 0.0
    for name, weight in variants.items():
        cumulative += weight
        if bucket < cumulative:
            return name
    return list(variants)[-1]  # rounding: the weights' float sum may fall short of 1


def config(experiment_id: str, variants: dict[str, float]) -> ExperimentConfig:
    return ExperimentConfig.from_dict(
        {
            "experiment_id": experiment_id,
            "name": "property",
            "variants": variants,
            "start": "2026-01-04T00:00:00Z",
            "end": "2026-01-11T00:00:00Z",
            "primary_metric": "sessions",
            "min_sample_size": 1,
            "confidence_level": 0.95,
        }
    )


@settings(max_examples=60, deadline=None)
@given(experiment_id=ids, users=st.lists(ids, min_size=1, max_size=20), variants=weights())
def test_assignment_is_the_documented_hash(experiment_id, users, variants):
    exp = {"experiment_id": experiment_id, "variants": variants}
    want = [documented_variant(experiment_id, u, variants) for u in users]
    assert [assign_variant(exp, u) for u in users] == want
    assert list(assign_variants(exp, users)) == want


@settings(max_examples=60, deadline=None)
@given(
    experiment_id=experiment_ids,
    users=st.lists(ids, min_size=1, max_size=20),
    variants=weights(),
    order=st.randoms(use_true_random=False),
)
def test_same_experiment_and_user_same_variant(experiment_id, users, variants, order):
    exp = config(experiment_id, variants)
    first = [assign_variant(exp, u) for u in users]
    assert [assign_variant(exp, u) for u in users] == first  # on every call
    mapping = {"experiment_id": experiment_id, "variants": dict(variants)}
    assert list(assign_variants(mapping, users)) == first  # from a config or a mapping
    shuffled = list(range(len(users)))
    order.shuffle(shuffled)
    batch = assign_variants(exp, [users[i] for i in shuffled] + users)
    assert [batch[shuffled.index(i)] for i in range(len(users))] == first  # any batch
    assert list(batch[len(users) :]) == first


def test_same_variant_in_every_process():
    """No per-process state (such as Python's salted `hash`) leaks into the buckets."""
    rng = np.random.default_rng(0)
    users = [f"u{i}" for i in rng.integers(0, 10**9, 200)] + ["", "日本語", "a:b", "🎬"]
    exp = {"experiment_id": "exp:x", "variants": {"control": 0.3, "a": 0.3, "b": 0.4}}
    script = (
        "import json, sys; from models.experiments.config import assign_variants; "
        "exp, users = json.load(sys.stdin); print(json.dumps(list(assign_variants(exp, users))))"
    )
    here = list(assign_variants(exp, users))
    for seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", script],
            input=json.dumps([exp, users]),
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": seed},
        )
        assert json.loads(out.stdout) == here


@settings(max_examples=25, deadline=None)
@given(experiment_id=experiment_ids, prefix=ids, variants=weights())
def test_each_share_is_within_a_binomial_tolerance_of_its_weight(experiment_id, prefix, variants):
    users = [f"{prefix}{i}" for i in range(USERS)]
    # counted in Python: numpy compares with a str scalar made a numpy string, which drops
    # a trailing "\x00" (a variant named "\x00" would count 0)
    counts = Counter(assign_variants(config(experiment_id, variants), users).tolist())
    assert set(counts) <= set(variants)
    for name, w in variants.items():
        count = counts[name]
        sigma = math.sqrt(USERS * w * (1 - w))
        assert abs(count - USERS * w) <= SIGMAS * sigma, (name, w, count)


@settings(max_examples=60, deadline=None)
@given(
    experiment_id=experiment_ids,
    variants=weights(),
    buckets=st.lists(st.floats(0, 1, exclude_max=True), min_size=1, max_size=50),
)
def test_the_first_variant_is_the_control_and_takes_the_lowest_buckets(
    experiment_id, variants, buckets
):
    exp = config(experiment_id, variants)
    names = list(variants)
    assert exp.control == names[0] and exp.treatments == names[1:]
    b = np.array(sorted(buckets))
    got = variants_for_buckets(b, exp.variants).tolist()
    assert [v == exp.control for v in got] == list(b < variants[names[0]])
    index = [names.index(v) for v in got]
    assert index == sorted(index)  # variants follow the config's order along the buckets
