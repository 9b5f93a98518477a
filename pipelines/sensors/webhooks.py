"""Webhooks: `webhook_sensor` relays the events outbox and delivers the pipeline's events
(models/integrations/events.py) to the subscribers of `webhooks.yaml`, signed as Standard
Webhooks, with retries; and `run_failure_event_sensor` turns every failed run of this code
location into a `run_failed` event that the webhook sensor then delivers.

`webhook_sensor` is a delivery worker, not a run launcher: each tick (every 15 s) first
relays what waits in the events outbox (models/integrations/outbox.py: events recorded
while Redis was down go out now, in order), then reads the events after its cursor (a
stream id, at most 500), queues them for the subscribers that want their type
(models/integrations/webhooks.py: one row per event id and subscriber, so reading the same
event again, or a second copy of it, sends nothing twice), moves the cursor, then sends
what is due, new deliveries and retries, at most 50 and for about 30 s, so that a tick
stays short; each delivery is claimed first, so overlapping ticks never POST one twice.
It reports what it did as the tick's skip reason. Its first tick starts at the stream's
end: events published before the sensor first ran are not replayed (what waits in the
outbox then is). Without `CLIPFLOW_REDIS`, or while Redis does not answer, the tick skips
with the reason and keeps its cursor, so nothing published meanwhile is missed
(deliveries already queued wait too). Subscribers are read at each tick; events that no
subscriber wants are passed over, not kept. A subscriber whose secret variable is unset
is held: its deliveries are queued and wait until the variable is set, and an alert
(`webhook_subscriber_held`, NotifierResource) names the subscriber and the variable once,
when it becomes held; the cursor remembers who is held.

`run_failure_event_sensor` records `run_failed` with data {job_name, run_id, partition,
failed_steps, error_classes} in the outbox, event id `run_failed_<run id>` (the same run
recorded twice is one event), and relays it: if Redis is down then, the event waits in
the outbox and the webhook sensor's next tick with Redis up sends it. `error_classes`
maps each failed step to its innermost exception's class name (e.g. `{"clip_features":
"RuntimeError"}`). Events leave the system (the API's streams, webhooks), so they carry
no error text, stack trace, path, connection string or secret: the details stay in the
Dagster run's logs, behind the UI.
"""

from __future__ import annotations

import json
import time

import dagster as dg
import redis

from assets.resources import NotifierResource, WebhooksResource
from models.core.errors import root_class
from models.integrations import events, outbox
from models.integrations.webhooks import deliver_due, enqueue, load_subscribers, status_counts

SENSOR_INTERVAL_S = 15
EVENTS_PER_TICK = 500
DELIVERIES_PER_TICK = 50
TICK_BUDGET_S = 30.0


@dg.sensor(
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def webhook_sensor(
    context: dg.SensorEvaluationContext, webhooks: WebhooksResource, notifier: NotifierResource
):
    """Relay the outbox, deliver new pipeline events to the webhook subscribers (see the
    module docstring)."""
    client = webhooks.event_stream()
    if client is None:
        return dg.SkipReason("CLIPFLOW_REDIS is unset: no event stream, webhooks are off")
    state = json.loads(context.cursor) if context.cursor else {}
    after = state.get("after")
    try:
        if after is None:  # first tick: start at the end, history is not replayed
            after = state["after"] = events.latest_id(client)
            context.update_cursor(json.dumps(state))
        relayed = outbox.relay(webhooks.outbox_path, client)
        new, last, malformed = events.read_batch(client, after=after, count=EVENTS_PER_TICK)
    except (redis.RedisError, OSError) as e:
        return dg.SkipReason(f"event stream unreachable ({type(e).__name__}: {e}); cursor kept")
    subscribers, errors = load_subscribers(webhooks.subscribers_path)
    for error in errors:
        context.log.warning(f"webhook subscriber skipped: {error}")
    for problem in malformed:
        context.log.warning(f"skipped: {problem}")
    held = _held(context, subscribers, state.get("held", {}), notifier)
    now = time.time()
    queued = enqueue(webhooks.db_path, new, subscribers, now)
    # past the malformed entries too: one bad entry never blocks the stream
    cursor = json.dumps({"after": last, **({"held": held} if held else {})})
    if cursor != context.cursor:
        context.update_cursor(cursor)
    sent = deliver_due(
        webhooks.db_path,
        subscribers,
        now,
        webhooks.policy(),
        limit=DELIVERIES_PER_TICK,
        budget_s=TICK_BUDGET_S,
    )
    pending = status_counts(webhooks.db_path).get("pending", 0) if subscribers else 0
    return dg.SkipReason(
        f"relayed {relayed.relayed} from the outbox ({relayed.pending} waiting); "
        f"{len(new)} new event(s), {queued} queued for {len(subscribers)} subscriber(s)"
        f" ({len(errors)} invalid, {len(held)} held); delivered {sent['delivered']}, retrying"
        f" {sent['retrying']}, gave up {sent['failed']}, deferred {sent['deferred']};"
        f" {pending} pending"
    )


def _held(context, subscribers, before: dict, notifier: NotifierResource) -> dict[str, str]:
    """{name: why} of the held subscribers; an alert for each newly held one (never the
    secret: the reason names its variable), a log line for each released one."""
    held = {s.name: s.held for s in subscribers if s.held}
    for name, why in held.items():
        if before.get(name) != why:
            notifier.notify(
                "webhook_subscriber_held",
                f"webhook subscriber {name!r} is held, its deliveries wait: {why}",
                subscriber=name,
            )
    for name in sorted(set(before) - set(held)):
        context.log.info(f"webhook subscriber {name!r} is no longer held: its deliveries go out")
    return held


def run_failed_data(run: dg.DagsterRun, step_errors: dict[str, str]) -> dict:
    """The `run_failed` event's data: which run, which steps, which error classes; never
    the error text (it can hold paths, SQL, hosts or secrets: it stays in the run)."""
    return {
        "job_name": run.job_name,
        "run_id": run.run_id,
        "partition": run.tags.get("dagster/partition"),
        "failed_steps": sorted(step_errors),
        "error_classes": {step: step_errors[step] for step in sorted(step_errors)},
    }


@dg.run_failure_sensor(
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def run_failure_event_sensor(context: dg.RunFailureSensorContext, webhooks: WebhooksResource):
    """Publish a `run_failed` event for every failed run of this code location."""
    connection = webhooks.settings().redis
    if not connection:
        return dg.SkipReason("CLIPFLOW_REDIS is unset: no event stream to publish to")
    step_errors = {
        e.step_key or "?": root_class(e.event_specific_data.error)
        for e in context.get_step_failure_events()
        if e.event_specific_data is not None and e.event_specific_data.error is not None
    }
    data = run_failed_data(context.dagster_run, step_errors)
    event_id = outbox.record(
        webhooks.outbox_path, "run_failed", data,
        source="run_failure_event_sensor", event_id=f"run_failed_{data['run_id']}",
    )  # fmt: skip
    result = outbox.relay_to(webhooks.outbox_path, connection, context.log.warning)
    where = "waits in the outbox" if result.error else "published"
    context.log.info(f"run_failed {event_id} for run {data['run_id']}: {where}")


webhook_sensors = [webhook_sensor, run_failure_event_sensor]
