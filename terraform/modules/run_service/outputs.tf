output "name" {
  description = "The service's name."
  value       = google_cloud_run_v2_service.this.name
}

output "uri" {
  description = "The service's run.app URL (refuses outside traffic: see ingress)."
  value       = google_cloud_run_v2_service.this.uri
}
