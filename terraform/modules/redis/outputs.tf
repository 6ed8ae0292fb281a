output "host" {
  description = "The instance's private address."
  value       = google_redis_instance.cache.host
}

output "port" {
  description = "The instance's port."
  value       = google_redis_instance.cache.port
}

output "url" {
  description = "REDIS_URL with the AUTH string (stored in Secret Manager as redis_url)."
  value       = local.url
  sensitive   = true
}

output "instance_id" {
  description = "The instance's id (projects/P/locations/R/instances/N), as its metrics name it."
  value       = google_redis_instance.cache.id
}
