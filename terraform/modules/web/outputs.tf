output "bucket" {
  description = "The bucket the built page is uploaded to (cloudbuild.yaml's upload-web)."
  value       = google_storage_bucket.web.name
}

output "backend_bucket" {
  description = "The load balancer's backend bucket of the page (modules/api_entry)."
  value       = google_compute_backend_bucket.web.id
}
