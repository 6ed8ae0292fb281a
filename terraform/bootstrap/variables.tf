variable "project_id" {
  description = "The Google Cloud project (empty, with billing enabled)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "A project id has 6 to 30 lowercase letters, digits and dashes."
  }
}

variable "region" {
  description = "The region of the image repository (the environments' region)."
  type        = string
  default     = "us-central1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]$", var.region))
    error_message = "A region looks like us-central1 or europe-west1."
  }
}

variable "name" {
  description = "The product's short name (as in the environment roots)."
  type        = string
  default     = "exchange"

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{2,9}$", var.name))
    error_message = "The name is 3 to 10 lowercase letters and digits."
  }
}

variable "state_location" {
  description = "Location of the state bucket (a region or a multi-region such as US or EU)."
  type        = string
  default     = "US"
}

variable "artifact_repository" {
  description = "The Docker repository's id (cloudbuild.yaml's _ARTIFACT_REPO)."
  type        = string
  default     = "exchange"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,62}$", var.artifact_repository))
    error_message = "A repository id is lowercase letters, digits and dashes."
  }
}
