output "state_bucket" {
  description = "The bucket of Terraform's state (backend.hcl's bucket, cloudbuild's _TF_STATE_BUCKET)."
  value       = google_storage_bucket.tfstate.name
}

output "image_repository" {
  description = "Where Cloud Build pushes the images."
  value       = "${google_artifact_registry_repository.images.location}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"
}

output "deployer_service_account" {
  description = "The service account to give the Cloud Build trigger."
  value       = google_service_account.deployer.email
}

output "services" {
  description = "The enabled APIs."
  value       = module.services.services
}
