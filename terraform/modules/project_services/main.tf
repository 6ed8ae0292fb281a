# The Google APIs the exchange uses, enabled once per project. Never disabled on destroy:
# other things in the project may use them too.

terraform {
  required_version = ">= 1.0"
  required_providers {
    google = {
      source = "hashicorp/google"
    }
  }
}

variable "project_id" {
  description = "The project to enable the APIs in."
  type        = string
}

variable "services" {
  description = "API service names, e.g. run.googleapis.com."
  type        = list(string)

  validation {
    condition     = alltrue([for s in var.services : can(regex("^[a-z0-9.-]+\\.googleapis\\.com$", s))])
    error_message = "Each service must be an API name ending in .googleapis.com."
  }
}

resource "google_project_service" "this" {
  for_each = toset(var.services)

  project                    = var.project_id
  service                    = each.value
  disable_on_destroy         = false
  disable_dependent_services = false
}

output "services" {
  description = "The enabled services."
  value       = sort([for s in google_project_service.this : s.service])
}
