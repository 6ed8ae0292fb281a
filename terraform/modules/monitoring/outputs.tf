output "alert_policies" {
  description = "Alert => its Cloud Monitoring alert policy."
  value       = { for k, p in google_monitoring_alert_policy.this : k => p.name }
}

output "log_metrics" {
  description = "Log-based metric => its name (the metric type is logging.googleapis.com/user/NAME)."
  value       = { for k, m in google_logging_metric.this : k => m.name }
}

output "dashboard" {
  description = "The vital-signs dashboard's id."
  value       = google_monitoring_dashboard.vitals.id
}
