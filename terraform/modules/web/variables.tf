variable "project_id" {
  description = "The project of the bucket."
  type        = string
}

variable "name" {
  description = "Prefix of every resource name."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,20}$", var.name))
    error_message = "The name is lowercase letters, digits and dashes, starting with a letter."
  }
}

variable "location" {
  description = "Where the bucket's objects live (the CDN serves them worldwide)."
  type        = string

  validation {
    condition     = length(var.location) > 0
    error_message = "Give the bucket's location, such as us-central1 or US."
  }
}

variable "labels" {
  description = "Labels on the bucket."
  type        = map(string)
  default     = {}
}
