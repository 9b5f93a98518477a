"""The root cause of a run's error: the innermost message of Dagster's wrapped errors."""

from __future__ import annotations

from types import SimpleNamespace as Error

from models.core.errors import root_cause, root_class


def test_root_cause_is_the_innermost_message_stripped():
    inner = Error(message="  RuntimeError: no rows\n  File x, line 1\n", cause=None)
    wrapped = Error(message="dagster wrapper", cause=Error(message="step failed", cause=inner))
    assert root_cause(wrapped) == "RuntimeError: no rows\n  File x, line 1"
    assert root_cause(inner) == root_cause(wrapped)
    assert root_cause(Error(message=None, cause=None)) == ""
    assert root_cause(Error(message="no cause attribute")) == "no cause attribute"


def test_root_class_is_the_innermost_class_name_and_nothing_else():
    inner = Error(message="RuntimeError: secret at /srv", cls_name="RuntimeError", cause=None)
    wrapped = Error(message="wrapper", cls_name="DagsterExecutionStepExecutionError", cause=inner)
    assert root_class(wrapped) == "RuntimeError"
    assert root_class(Error(message="x", cause=None)) == "Error"  # no cls_name: not made up
    assert root_class(Error(message="x", cls_name="a b; c", cause=None)) == "Error"
