variable "project_id" {
  description = "The project the metrics, alert policies and dashboard belong to."
  type        = string
}

variable "name" {
  description = "Prefix of every metric, policy and dashboard name (the environment's prefix)."
  type        = string
}

variable "notification_channels" {
  description = "Cloud Monitoring notification channel ids (projects/P/notificationChannels/N) every alert goes to; empty: alerts open incidents without notifying anyone."
  type        = list(string)
  default     = []
}

variable "matcher_service" {
  description = "The matcher's Cloud Run service name."
  type        = string
}

variable "function_services" {
  description = "The functions' Cloud Run service names (Cloud Functions gen 2 run on Cloud Run), for 5xx rates per function."
  type        = list(string)
}

variable "commands_subscription" {
  description = "The matcher's commands subscription."
  type        = string
}

variable "dead_letter_subscription" {
  description = "The subscription where dead letters wait for an operator."
  type        = string
}

variable "sql_instance" {
  description = "The Cloud SQL instance's name."
  type        = string
}

variable "redis_instance_id" {
  description = "The Memorystore instance's id (projects/P/locations/R/instances/N)."
  type        = string
}

variable "matcher_lag_ms" {
  description = "Alert when the matcher's 99th percentile lag (publish to applied) stays above this many milliseconds for 5 minutes."
  type        = number
  default     = 5000

  validation {
    condition     = var.matcher_lag_ms > 0
    error_message = "The matcher lag threshold is a positive number of milliseconds."
  }
}

variable "commands_backlog_age_s" {
  description = "Alert when the oldest unacknowledged command is older than this many seconds."
  type        = number
  default     = 60

  validation {
    condition     = var.commands_backlog_age_s > 0
    error_message = "The backlog age threshold is a positive number of seconds."
  }
}

variable "function_5xx_per_s" {
  description = "Alert when a function answers more than this many 5xx per second over 5 minutes."
  type        = number
  default     = 0.1

  validation {
    condition     = var.function_5xx_per_s > 0
    error_message = "The 5xx rate threshold is positive."
  }
}
