output "api_url" {
  description = "The API's base URL (HTTPS, through the load balancer)."
  value       = module.api_entry.api_url
}

output "web_url" {
  description = "The web page (the API's origin)."
  value       = "${module.api_entry.api_url}/"
}

output "web_bucket" {
  description = "The bucket the built web page is uploaded to (cloudbuild.yaml's upload-web)."
  value       = module.web.bucket
}

output "ws_url" {
  description = "The WebSocket URL."
  value       = module.api_entry.ws_url
}

output "api_ip_address" {
  description = "The load balancer's address: the A record of api_domain."
  value       = module.api_entry.ip_address
}

output "api_domain" {
  description = "The host name the managed certificate is issued for."
  value       = module.api_entry.domain
}

output "certificate" {
  description = "The managed certificate; `gcloud compute ssl-certificates describe NAME --global` shows when it is ACTIVE."
  value       = module.api_entry.certificate
}

output "functions" {
  description = "Function => deployed name."
  value       = module.functions.names
}

output "scheduler_jobs" {
  description = "Scheduled function => Cloud Scheduler job (gcloud scheduler jobs run NAME --location REGION)."
  value       = module.functions.scheduler_jobs
}

output "matcher_service" {
  description = "The matcher's Cloud Run service."
  value       = module.matcher.name
}

output "ws_service" {
  description = "The ws service's Cloud Run service."
  value       = module.ws.name
}

output "migrate_job" {
  description = "The migration job: gcloud run jobs execute NAME --region REGION --wait."
  value       = module.migrate.name
}

output "cloud_sql_instance" {
  description = "The Cloud SQL connection name (CLOUD_SQL_INSTANCE)."
  value       = module.database.connection_name
}

output "redis_host" {
  description = "Memorystore's private address."
  value       = module.redis.host
}

output "secrets" {
  description = "Secret key => secret id; docs/deploy.md says which ones an operator fills."
  value       = module.secrets.ids
}

output "service_accounts" {
  description = "Deployable => its service account email."
  value       = local.emails
}

output "dead_letter_subscription" {
  description = "Where undeliverable commands wait for an operator."
  value       = module.pubsub.dead_letter_subscription
}

output "functions_bucket" {
  description = "The bucket of the functions' uploads."
  value       = module.functions.sources_bucket
}

output "alert_policies" {
  description = "Alert => its Cloud Monitoring alert policy (docs/operations.md, Alerts)."
  value       = module.monitoring.alert_policies
}

output "dashboard" {
  description = "The vital-signs dashboard's id."
  value       = module.monitoring.dashboard
}
