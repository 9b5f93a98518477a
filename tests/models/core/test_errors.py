"""The root cause of a run's error: the innermost message of Dagster's wrapped errors."""

from __future__ import annotations

from types import SimpleNamespace as Error

from models.core.errors import root_cause


def test_root_cause_is_the_innermost_message_stripped():
    inner = Error(message="  RuntimeError: no rows\n  File x, line 1\n", cause=None)
    wrapped = Error(message="dagster wrapper", cause=Error(message="step failed", cause=inner))
    assert root_cause(wrapped) == "RuntimeError: no rows\n  File x, line 1"
    assert root_cause(inner) == root_cause(wrapped)
    assert root_cause(Error(message=None, cause=None)) == ""
    assert root_cause(Error(message="no cause attribute")) == "no cause attribute"
