terraform {
  # Syntax kept to what Terraform 1.0 reads (tests/deploy check formatting with 1.0.3); Cloud
  # Build applies with the Terraform of cloudbuild.yaml's _TERRAFORM_IMAGE.
  required_version = ">= 1.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.20"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
  }

  # Remote state in the bucket terraform/bootstrap made. Left to configure per environment:
  #   terraform init -backend-config=backend.hcl     (see backend.hcl.example)
  # Cloud Build passes -backend-config=bucket=... -backend-config=prefix=... itself.
  backend "gcs" {}
}

provider "google" {
  project = var.project_id
  region  = var.region
}
