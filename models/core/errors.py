"""Reading the errors a run reports (Dagster-free: any object with `message` and `cause`)."""

from __future__ import annotations


def root_cause(error) -> str:
    """The innermost error's message, stripped: Dagster wraps the asset's own exception
    (e.g. `RuntimeError: ...`) in errors of its own, each pointing at the next by `cause`."""
    while getattr(error, "cause", None) is not None:
        error = error.cause
    return (error.message or "").strip()


def root_class(error) -> str:
    """The innermost error's class name (`cls_name`), e.g. `RuntimeError`; `Error` when the
    report does not say. What leaves the system about a failure: never its message."""
    while getattr(error, "cause", None) is not None:
        error = error.cause
    name = getattr(error, "cls_name", None) or "Error"
    return name if name.isidentifier() else "Error"
