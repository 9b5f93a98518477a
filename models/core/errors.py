"""Reading the errors a run reports (Dagster-free: any object with `message` and `cause`)."""

from __future__ import annotations


def root_cause(error) -> str:
    """The innermost error's message, stripped: Dagster wraps the asset's own exception
    (e.g. `RuntimeError: ...`) in errors of its own, each pointing at the next by `cause`."""
    while getattr(error, "cause", None) is not None:
        error = error.cause
    return (error.message or "").strip()
