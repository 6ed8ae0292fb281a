output "ids" {
  description = "Secret key => secret id."
  value       = { for k, s in google_secret_manager_secret.this : k => s.secret_id }
}

output "names" {
  description = "Secret key => resource name (projects/P/secrets/ID)."
  value       = { for k, s in google_secret_manager_secret.this : k => s.name }
}
