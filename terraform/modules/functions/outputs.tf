output "names" {
  description = "Function key => deployed function (and Cloud Run service) name."
  value       = { for k, f in google_cloudfunctions2_function.this : k => f.name }
}

output "uris" {
  description = "Function key => its run.app URL (refuses outside traffic: see ingress)."
  value       = { for k, f in google_cloudfunctions2_function.this : k => f.service_config[0].uri }
}

output "scheduler_jobs" {
  description = "Scheduled function => its Cloud Scheduler job."
  value       = { for k, j in google_cloud_scheduler_job.this : k => j.name }
}

output "sources_bucket" {
  description = "The bucket holding the functions' uploads."
  value       = google_storage_bucket.sources.name
}
