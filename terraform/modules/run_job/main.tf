# A Cloud Run job: the database migrations (`python -m migrations.migrate`, in the matcher's
# image, which carries migrations/). Cloud Build runs it after each
# `terraform apply` (`gcloud run jobs execute NAME --wait`): it runs inside the VPC (direct VPC
# egress) where Cloud SQL's private address is, which Cloud Build's own workers cannot reach.

terraform {
  required_version = ">= 1.0"
  required_providers {
    google = {
      source = "hashicorp/google"
    }
  }
}

resource "google_cloud_run_v2_job" "this" {
  project             = var.project_id
  location            = var.region
  name                = var.name
  labels              = var.labels
  deletion_protection = var.deletion_protection

  template {
    task_count = 1
    labels     = var.labels

    template {
      service_account = var.service_account
      timeout         = "${var.timeout_seconds}s"
      max_retries     = 1

      vpc_access {
        egress = "PRIVATE_RANGES_ONLY"
        network_interfaces {
          network    = var.network
          subnetwork = var.subnetwork
        }
      }

      containers {
        image   = var.image
        command = var.command

        resources {
          limits = {
            cpu    = "1"
            memory = "512Mi"
          }
        }

        dynamic "env" {
          for_each = var.env
          content {
            name  = env.key
            value = env.value
          }
        }

        dynamic "env" {
          for_each = var.secret_env
          content {
            name = env.key
            value_source {
              secret_key_ref {
                secret  = env.value
                version = "latest"
              }
            }
          }
        }
      }
    }
  }
}

variable "project_id" {
  description = "The project of the job."
  type        = string
}

variable "region" {
  description = "The job's region."
  type        = string
}

variable "name" {
  description = "The job's name."
  type        = string
}

variable "labels" {
  description = "Labels on the job."
  type        = map(string)
  default     = {}
}

variable "image" {
  description = "The container image."
  type        = string
}

variable "command" {
  description = "The command (entrypoint and arguments)."
  type        = list(string)
}

variable "service_account" {
  description = "Email of the job's service account."
  type        = string
}

variable "timeout_seconds" {
  description = "Longest run of one task."
  type        = number
  default     = 900
}

variable "env" {
  description = "Plain environment variables."
  type        = map(string)
  default     = {}
}

variable "secret_env" {
  description = "Environment variable => Secret Manager secret id (latest version)."
  type        = map(string)
  default     = {}
}

variable "network" {
  description = "The VPC for direct VPC egress."
  type        = string
}

variable "subnetwork" {
  description = "The subnet for direct VPC egress."
  type        = string
}

variable "deletion_protection" {
  description = "Refuse to delete the job."
  type        = bool
  default     = true
}

output "name" {
  description = "The job's name (gcloud run jobs execute NAME --region REGION --wait)."
  value       = google_cloud_run_v2_job.this.name
}
