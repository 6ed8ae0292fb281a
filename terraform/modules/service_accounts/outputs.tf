output "emails" {
  description = "Short name => service account email."
  value       = { for k, a in google_service_account.this : k => a.email }
}

output "members" {
  description = "Short name => IAM member (serviceAccount:EMAIL)."
  value       = { for k, a in google_service_account.this : k => "serviceAccount:${a.email}" }
}

output "ids" {
  description = "Short name => service account resource id (projects/P/serviceAccounts/EMAIL)."
  value       = { for k, a in google_service_account.this : k => a.id }
}
