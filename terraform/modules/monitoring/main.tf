# Monitoring: log-based metrics over the services' structured logs, Cloud Monitoring alert
# policies on them and on the built-in metrics (Pub/Sub, Cloud Run, Cloud SQL, Memorystore),
# and one dashboard with the exchange's vital signs. docs/operations.md says what each alert
# means and what to do.
#
# The alert log lines carry a stable field, jsonPayload.alert (shared/alerts.py), so the
# metrics do not depend on a message's wording.

terraform {
  required_version = ">= 1.0"
  required_providers {
    google = {
      source = "hashicorp/google"
    }
  }
}

locals {
  run        = "resource.type=\"cloud_run_revision\""
  matcher    = "${local.run} AND resource.labels.service_name=\"${var.matcher_service}\""
  alert_logs = "severity>=WARNING AND jsonPayload.alert="

  # Counters of log lines: the alerts the code raises, and the matcher's errors (a failed
  # batch, an undecodable command, a lost lease).
  counters = {
    audit-differences = {
      description = "An audit (books' conservation or on-chain) found a difference."
      filter      = "${local.alert_logs}\"audit_difference\""
    }
    hot-wallet-low = {
      description = "The hot wallet holds less than the pending withdrawals need."
      filter      = "${local.alert_logs}\"hot_wallet_low\""
    }
    withdrawals-stuck = {
      description = "A withdrawal's transaction is not mined in time (replaced, or cannot be under the fee cap)."
      filter      = "${local.alert_logs}\"withdrawal_stuck\""
    }
    matcher-errors = {
      description = "The matcher logged an error (a failed batch, an undecodable command, a lost lease)."
      filter      = "${local.matcher} AND severity>=ERROR"
    }
    restarts = {
      description = "A container of the exchange crashed and was restarted."
      filter      = "${local.run} AND jsonPayload.event=\"child_crashed\""
    }
    # Cloud Scheduler logs each attempt; a failed one (the function answered an error or timed
    # out) at ERROR. An audit that cannot run raises no audit_difference: this says so.
    scheduled-job-failures = {
      description = "A scheduled function's run failed (the watcher, sweep, sender or an audit)."
      filter      = "resource.type=\"cloud_scheduler_job\" AND severity>=ERROR"
    }
  }

  log_metric = "logging.googleapis.com/user/${var.name}"

  # Every alert: a metric filter, the period it is aligned over and how, and the threshold.
  # group_by names a label the alert is raised per value of (a function's 5xx), or nothing.
  alerts = {
    matcher-lag = {
      display  = "Matcher lag (publish to applied, p99) above ${var.matcher_lag_ms} ms"
      filter   = "metric.type=\"${local.log_metric}-matcher-lag\" AND resource.type=\"cloud_run_revision\""
      period   = "60s"
      aligner  = "ALIGN_PERCENTILE_99"
      reducer  = "REDUCE_MAX"
      group_by = ""
      compare  = "COMPARISON_GT"
      value    = var.matcher_lag_ms
      duration = "300s"
    }
    matcher-errors = {
      display  = "Matcher batch failures and errors"
      filter   = "metric.type=\"${local.log_metric}-matcher-errors\" AND resource.type=\"cloud_run_revision\""
      period   = "60s"
      aligner  = "ALIGN_SUM"
      reducer  = "REDUCE_SUM"
      group_by = ""
      compare  = "COMPARISON_GT"
      value    = 0
      duration = "0s"
    }
    commands-backlog = {
      display  = "Commands waiting longer than ${var.commands_backlog_age_s} s"
      filter   = "metric.type=\"pubsub.googleapis.com/subscription/oldest_unacked_message_age\" AND resource.type=\"pubsub_subscription\" AND resource.labels.subscription_id=\"${var.commands_subscription}\""
      period   = "60s"
      aligner  = "ALIGN_MAX"
      reducer  = "REDUCE_MAX"
      group_by = ""
      compare  = "COMPARISON_GT"
      value    = var.commands_backlog_age_s
      duration = "120s"
    }
    dead-letters = {
      display  = "Dead letters waiting for an operator"
      filter   = "metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND resource.type=\"pubsub_subscription\" AND resource.labels.subscription_id=\"${var.dead_letter_subscription}\""
      period   = "60s"
      aligner  = "ALIGN_MAX"
      reducer  = "REDUCE_MAX"
      group_by = ""
      compare  = "COMPARISON_GT"
      value    = 0
      duration = "0s"
    }
    audit-differences = {
      display  = "Audit difference"
      filter   = "metric.type=\"${local.log_metric}-audit-differences\""
      period   = "60s"
      aligner  = "ALIGN_SUM"
      reducer  = "REDUCE_SUM"
      group_by = ""
      compare  = "COMPARISON_GT"
      value    = 0
      duration = "0s"
    }
    hot-wallet-low = {
      display  = "Hot wallet short of pending withdrawals"
      filter   = "metric.type=\"${local.log_metric}-hot-wallet-low\""
      period   = "60s"
      aligner  = "ALIGN_SUM"
      reducer  = "REDUCE_SUM"
      group_by = ""
      compare  = "COMPARISON_GT"
      value    = 0
      duration = "0s"
    }
    withdrawals-stuck = {
      display  = "Withdrawals stuck on the chain"
      filter   = "metric.type=\"${local.log_metric}-withdrawals-stuck\""
      period   = "60s"
      aligner  = "ALIGN_SUM"
      reducer  = "REDUCE_SUM"
      group_by = ""
      compare  = "COMPARISON_GT"
      value    = 0
      duration = "0s"
    }
    function-5xx = {
      display  = "A function answers 5xx (more than ${var.function_5xx_per_s}/s)"
      filter   = "metric.type=\"run.googleapis.com/request_count\" AND ${local.run} AND metric.labels.response_code_class=\"5xx\" AND resource.labels.service_name=one_of(${join(", ", formatlist("\"%s\"", var.function_services))})"
      period   = "60s"
      aligner  = "ALIGN_RATE"
      reducer  = "REDUCE_SUM"
      group_by = "resource.label.service_name"
      compare  = "COMPARISON_GT"
      value    = var.function_5xx_per_s
      duration = "300s"
    }
    cloud-sql-down = {
      display  = "Cloud SQL is down"
      filter   = "metric.type=\"cloudsql.googleapis.com/database/up\" AND resource.type=\"cloudsql_database\" AND resource.labels.database_id=\"${var.project_id}:${var.sql_instance}\""
      period   = "60s"
      aligner  = "ALIGN_MIN"
      reducer  = "REDUCE_MIN"
      group_by = ""
      compare  = "COMPARISON_LT"
      value    = 1
      duration = "120s"
    }
    cloud-sql-disk = {
      display  = "Cloud SQL disk above 85%"
      filter   = "metric.type=\"cloudsql.googleapis.com/database/disk/utilization\" AND resource.type=\"cloudsql_database\" AND resource.labels.database_id=\"${var.project_id}:${var.sql_instance}\""
      period   = "60s"
      aligner  = "ALIGN_MAX"
      reducer  = "REDUCE_MAX"
      group_by = ""
      compare  = "COMPARISON_GT"
      value    = 0.85
      duration = "300s"
    }
    cloud-sql-cpu = {
      display  = "Cloud SQL CPU above 90%"
      filter   = "metric.type=\"cloudsql.googleapis.com/database/cpu/utilization\" AND resource.type=\"cloudsql_database\" AND resource.labels.database_id=\"${var.project_id}:${var.sql_instance}\""
      period   = "60s"
      aligner  = "ALIGN_MEAN"
      reducer  = "REDUCE_MAX"
      group_by = ""
      compare  = "COMPARISON_GT"
      value    = 0.9
      duration = "600s"
    }
    redis-memory = {
      display  = "Redis memory above 90%"
      filter   = "metric.type=\"redis.googleapis.com/stats/memory/usage_ratio\" AND resource.type=\"redis_instance\" AND resource.labels.instance_id=\"${var.redis_instance_id}\""
      period   = "60s"
      aligner  = "ALIGN_MAX"
      reducer  = "REDUCE_MAX"
      group_by = ""
      compare  = "COMPARISON_GT"
      value    = 0.9
      duration = "300s"
    }
    scheduled-job-failures = {
      display  = "Scheduled runs failing (two or more in 15 min)"
      filter   = "metric.type=\"${local.log_metric}-scheduled-job-failures\""
      period   = "900s" # the audits run every 5 minutes: count over three of their runs
      aligner  = "ALIGN_SUM"
      reducer  = "REDUCE_SUM"
      group_by = ""
      compare  = "COMPARISON_GT"
      value    = 1
      duration = "0s"
    }
    redis-restarted = {
      display  = "Redis restarted (a Basic tier instance comes back empty)"
      filter   = "metric.type=\"redis.googleapis.com/server/uptime\" AND resource.type=\"redis_instance\" AND resource.labels.instance_id=\"${var.redis_instance_id}\""
      period   = "60s"
      aligner  = "ALIGN_MIN"
      reducer  = "REDUCE_MIN"
      group_by = ""
      compare  = "COMPARISON_LT"
      value    = 300
      duration = "0s"
    }
    restarts = {
      display  = "A container crashed and was restarted"
      filter   = "metric.type=\"${local.log_metric}-restarts\" AND resource.type=\"cloud_run_revision\""
      period   = "60s"
      aligner  = "ALIGN_SUM"
      reducer  = "REDUCE_SUM"
      group_by = ""
      compare  = "COMPARISON_GT"
      value    = 2
      duration = "0s"
    }
  }
}

resource "google_logging_metric" "this" {
  for_each = local.counters

  project     = var.project_id
  name        = "${var.name}-${each.key}"
  description = each.value.description
  filter      = each.value.filter

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }
}

# The matcher's lag: from each batch's log line (lag_ms, the oldest command's publish time to
# its batch applied).
resource "google_logging_metric" "matcher_lag" {
  project         = var.project_id
  name            = "${var.name}-matcher-lag"
  description     = "Milliseconds from a command's publish to its batch applied (the batch's oldest)."
  filter          = "${local.matcher} AND jsonPayload.message=\"batch\" AND jsonPayload.lag_ms>=0"
  value_extractor = "EXTRACT(jsonPayload.lag_ms)"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "DISTRIBUTION"
    unit        = "ms"
  }

  bucket_options {
    exponential_buckets {
      num_finite_buckets = 32
      growth_factor      = 2
      scale              = 1
    }
  }
}

resource "google_monitoring_alert_policy" "this" {
  for_each = local.alerts

  project               = var.project_id
  display_name          = "${var.name}: ${each.value.display}"
  combiner              = "OR"
  notification_channels = var.notification_channels
  severity              = contains(["audit-differences", "cloud-sql-down", "matcher-errors"], each.key) ? "CRITICAL" : "WARNING"

  documentation {
    content   = "What it means and what to do: docs/operations.md, section \"Alerts\", alert `${each.key}`."
    mime_type = "text/markdown"
  }

  conditions {
    display_name = each.value.display

    condition_threshold {
      filter          = each.value.filter
      comparison      = each.value.compare
      threshold_value = each.value.value
      duration        = each.value.duration

      aggregations {
        alignment_period     = each.value.period
        per_series_aligner   = each.value.aligner
        cross_series_reducer = each.value.reducer
        group_by_fields      = each.value.group_by == "" ? [] : [each.value.group_by]
      }

      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "1800s"
  }

  depends_on = [google_logging_metric.this, google_logging_metric.matcher_lag]
}

resource "google_monitoring_dashboard" "vitals" {
  project = var.project_id
  dashboard_json = jsonencode({
    displayName = "${var.name}: vital signs"
    mosaicLayout = {
      columns = 12
      tiles = [
        for i, tile in [
          { title = "Matcher lag p99 (ms)", filter = local.alerts["matcher-lag"].filter, aligner = "ALIGN_PERCENTILE_99", group = "" },
          { title = "Matcher errors", filter = local.alerts["matcher-errors"].filter, aligner = "ALIGN_SUM", group = "" },
          { title = "Oldest waiting command (s)", filter = local.alerts["commands-backlog"].filter, aligner = "ALIGN_MAX", group = "" },
          { title = "Dead letters", filter = local.alerts["dead-letters"].filter, aligner = "ALIGN_MAX", group = "" },
          { title = "5xx per function (/s)", filter = local.alerts["function-5xx"].filter, aligner = "ALIGN_RATE", group = "resource.label.service_name" },
          { title = "Audit differences", filter = local.alerts["audit-differences"].filter, aligner = "ALIGN_SUM", group = "" },
          { title = "Hot wallet short", filter = local.alerts["hot-wallet-low"].filter, aligner = "ALIGN_SUM", group = "" },
          { title = "Withdrawals stuck", filter = local.alerts["withdrawals-stuck"].filter, aligner = "ALIGN_SUM", group = "" },
          { title = "Scheduled runs failed", filter = local.alerts["scheduled-job-failures"].filter, aligner = "ALIGN_SUM", group = "" },
          { title = "Cloud SQL up", filter = local.alerts["cloud-sql-down"].filter, aligner = "ALIGN_MIN", group = "" },
          { title = "Cloud SQL CPU", filter = local.alerts["cloud-sql-cpu"].filter, aligner = "ALIGN_MEAN", group = "" },
          { title = "Redis memory", filter = local.alerts["redis-memory"].filter, aligner = "ALIGN_MAX", group = "" },
          ] : {
          xPos   = (i % 2) * 6
          yPos   = floor(i / 2) * 4
          width  = 6
          height = 4
          widget = {
            title = tile.title
            xyChart = {
              dataSets = [{
                plotType = "LINE"
                timeSeriesQuery = {
                  timeSeriesFilter = {
                    filter = tile.filter
                    aggregation = {
                      alignmentPeriod    = "60s"
                      perSeriesAligner   = tile.aligner
                      crossSeriesReducer = "REDUCE_SUM"
                      groupByFields      = tile.group == "" ? [] : [tile.group]
                    }
                  }
                }
              }]
            }
          }
        }
      ]
    }
  })
}
