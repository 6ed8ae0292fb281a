"""terraform/modules/monitoring keeps what operators are promised (docs/operations.md): a
log-based metric for every alert the code raises (keyed on the stable ``alert`` field of
shared/alerts.py, or on the restart event of infra/supervision.py), an alert policy for every
vital sign, each sent to the notification channels of the environment's variable, and one
dashboard; and the matcher stays a one-instance service (docs/decisions/0023)."""

from __future__ import annotations

import json
import re
from typing import Any

from infra.supervision import RESTART_EVENT_CRASHED
from shared.alerts import ALERT_FIELD, ALERTS
from tests.deploy.tools import (
    ENV_ROOT,
    MODULES,
    REPO,
    load_dir,
    locals_of,
    named_blocks,
    one,
    resources,
)

ALERTS_PROMISED = {
    "matcher-lag", "matcher-errors", "commands-backlog", "dead-letters", "audit-differences",
    "hot-wallet-low", "withdrawals-stuck", "function-5xx", "cloud-sql-down", "cloud-sql-disk",
    "cloud-sql-cpu", "redis-memory", "redis-restarted", "restarts", "scheduled-job-failures",
}  # fmt: skip


def _monitoring() -> dict[str, list[Any]]:
    return load_dir(MODULES / "monitoring")


def _locals() -> dict[str, Any]:
    return locals_of(_monitoring())


def test_every_alert_the_code_raises_has_a_log_metric() -> None:
    counters = _locals()["counters"]
    assert _locals()["alert_logs"].endswith(f"jsonPayload.{ALERT_FIELD}=")
    filters = {c["filter"] for c in counters.values()}
    for name in ALERTS:
        assert f'${{local.alert_logs}}"{name}"' in filters, name
    assert RESTART_EVENT_CRASHED in counters["restarts"]["filter"]
    metric = resources(_monitoring(), "google_logging_metric")
    assert set(metric) == {"this", "matcher_lag"}
    lag = metric["matcher_lag"]
    assert lag["value_extractor"] == "EXTRACT(jsonPayload.lag_ms)"
    assert one(lag["metric_descriptor"])["value_type"] == "DISTRIBUTION"


def test_an_alert_policy_for_every_vital_sign_sent_to_the_channels() -> None:
    alerts = _locals()["alerts"]
    assert set(alerts) == ALERTS_PROMISED
    for key, alert in alerts.items():
        assert alert["compare"] in ("COMPARISON_GT", "COMPARISON_LT"), key
        assert re.fullmatch(r"\d+s", alert["duration"]), key
        assert re.fullmatch(r"\d+s", alert["period"]), key
    assert "request_count" in alerts["function-5xx"]["filter"]
    assert alerts["function-5xx"]["group_by"] == "resource.label.service_name"
    assert "${var.commands_subscription}" in alerts["commands-backlog"]["filter"]
    assert "${var.dead_letter_subscription}" in alerts["dead-letters"]["filter"]
    policy = resources(_monitoring(), "google_monitoring_alert_policy")["this"]
    assert policy["for_each"] == "${local.alerts}"
    aggregation = one(one(one(policy["conditions"])["condition_threshold"])["aggregations"])
    assert aggregation["alignment_period"] == "${each.value.period}"
    assert policy["notification_channels"] == "${var.notification_channels}"
    assert "docs/operations.md" in one(policy["documentation"])["content"]
    runbook = (REPO / "docs" / "operations.md").read_text()
    for key in alerts:  # each policy's documentation sends the operator to its row
        assert re.search(rf"^\| [^|]*`{key}`", runbook, re.M), key


def test_every_scheduled_run_that_fails_alerts_and_so_does_a_difference_of_either_audit() -> None:
    """An audit that cannot run raises no ``audit_difference``: a failed scheduled run (any
    Cloud Scheduler job: the watcher, sweep, sender, the books' and the on-chain audit) is an
    alert of its own, counted over long enough to see a job that runs every 5 minutes fail
    twice. Both audits raise the same ``audit_difference`` (shared/audit_runs.py records
    either kind)."""
    local = _locals()
    counter = local["counters"]["scheduled-job-failures"]
    assert counter["filter"] == 'resource.type="cloud_scheduler_job" AND severity>=ERROR'
    alert = local["alerts"]["scheduled-job-failures"]
    assert alert["filter"] == 'metric.type="${local.log_metric}-scheduled-job-failures"'
    assert (alert["aligner"], alert["compare"], alert["value"]) == ("ALIGN_SUM", "COMPARISON_GT", 1)
    assert int(alert["period"].rstrip("s")) >= 3 * 5 * 60
    jobs = resources(load_dir(MODULES / "functions"), "google_cloud_scheduler_job")["this"]
    assert jobs["for_each"] == "${local.scheduled}"  # every scheduled function has a job
    assert "audit_runs.record" in (REPO / "wallet" / "scheduled_audit.py").read_text()
    assert local["counters"]["audit-differences"]["filter"].endswith('"audit_difference"')


def test_redis_health_beyond_its_memory() -> None:
    restarted = _locals()["alerts"]["redis-restarted"]
    assert "redis.googleapis.com/server/uptime" in restarted["filter"]
    assert "${var.redis_instance_id}" in restarted["filter"]
    assert restarted["compare"] == "COMPARISON_LT"


def test_the_environment_wires_monitoring_and_validates_its_channels() -> None:
    env = load_dir(ENV_ROOT)
    call = named_blocks(env, "module")["monitoring"]
    assert call["source"] == "../../modules/monitoring"
    assert call["notification_channels"] == "${var.notification_channels}"
    assert call["matcher_service"] == "${module.matcher.name}"
    assert call["commands_subscription"] == "${module.pubsub.commands_subscription}"
    variable = named_blocks(env, "variable")["notification_channels"]
    assert variable.get("validation")
    assert {"alert_policies", "dashboard"} <= set(named_blocks(env, "output"))
    bootstrap = locals_of(load_dir(REPO / "terraform" / "bootstrap"))
    assert {"roles/monitoring.editor", "roles/logging.configWriter"} <= set(
        bootstrap["deployer_roles"]
    )


def test_one_dashboard_of_the_vital_signs() -> None:
    dashboards = resources(_monitoring(), "google_monitoring_dashboard")
    assert set(dashboards) == {"vitals"}
    assert "jsonencode" in json.dumps(dashboards["vitals"]["dashboard_json"])


def test_the_matcher_remains_a_one_instance_service_for_the_reasons_recorded() -> None:
    record = REPO / "docs" / "decisions" / "0023-matcher-stays-a-cloud-run-service.md"
    assert record.is_file()
    env = load_dir(ENV_ROOT)
    matcher = named_blocks(env, "module")["matcher"]
    assert matcher["min_instances"] == 1 and matcher["max_instances"] == 1
    assert not resources(load_dir(MODULES / "run_service"), "google_cloud_run_v2_worker_pool")
