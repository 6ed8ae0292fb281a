# The Firestore database (native mode, the project's "(default)"): users, emails, sessions,
# API keys, deposit addresses. Point-in-time recovery (7 days) and delete protection on.
# A project can have only one "(default)" database: if one exists already (an old App Engine
# app made it), import it: terraform import module.firestore.google_firestore_database.main
# "projects/PROJECT/databases/(default)".

terraform {
  required_version = ">= 1.0"
  required_providers {
    google = {
      source = "hashicorp/google"
    }
  }
}

resource "google_firestore_database" "main" {
  project                           = var.project_id
  name                              = "(default)"
  location_id                       = var.location
  type                              = "FIRESTORE_NATIVE"
  concurrency_mode                  = "PESSIMISTIC"
  app_engine_integration_mode       = "DISABLED"
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"
  delete_protection_state           = var.deletion_protection ? "DELETE_PROTECTION_ENABLED" : "DELETE_PROTECTION_DISABLED"
  deletion_policy                   = var.deletion_protection ? "ABANDON" : "DELETE"
}

variable "project_id" {
  description = "The project of the database."
  type        = string
}

variable "location" {
  description = "Firestore location: a region (us-central1) or a multi-region (nam5, eur3). Cannot change later."
  type        = string

  validation {
    condition     = can(regex("^([a-z]+-[a-z]+[0-9]+|nam5|nam7|eur3)$", var.location))
    error_message = "The location must be a region such as us-central1 or a multi-region nam5, nam7, eur3."
  }
}

variable "deletion_protection" {
  description = "Refuse to delete the database."
  type        = bool
  default     = true
}

output "name" {
  description = "The database's name."
  value       = google_firestore_database.main.name
}
