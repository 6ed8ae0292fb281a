output "connection_name" {
  description = "PROJECT:REGION:INSTANCE, for the Cloud SQL connector (CLOUD_SQL_INSTANCE)."
  value       = google_sql_database_instance.postgres.connection_name
}

output "instance_name" {
  description = "The instance's name."
  value       = google_sql_database_instance.postgres.name
}

output "private_ip" {
  description = "The instance's private address."
  value       = google_sql_database_instance.postgres.private_ip_address
}

output "database" {
  description = "The database name (PGDATABASE)."
  value       = google_sql_database.exchange.name
}

output "user" {
  description = "The application's user (PGUSER)."
  value       = google_sql_user.app.name
}

output "password" {
  description = "The application's password (stored in Secret Manager as db_password)."
  value       = random_password.app.result
  sensitive   = true
}
