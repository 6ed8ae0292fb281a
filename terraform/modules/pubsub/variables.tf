variable "project_id" {
  description = "The project of the topics."
  type        = string
}

variable "labels" {
  description = "Labels on every topic and subscription."
  type        = map(string)
  default     = {}
}

variable "commands_topic" {
  description = "The commands topic (COMMANDS_TOPIC)."
  type        = string
  default     = "commands"
}

variable "commands_subscription" {
  description = "The matcher's subscription on commands (COMMANDS_SUBSCRIPTION)."
  type        = string
  default     = "commands-matcher"
}

variable "events_topic" {
  description = "The events topic (EVENTS_TOPIC)."
  type        = string
  default     = "events"
}

variable "dead_letter_topic" {
  description = "Where commands go after max_delivery_attempts (DEAD_LETTER_TOPIC)."
  type        = string
  default     = "commands-dead-letter"
}

variable "max_delivery_attempts" {
  description = "Deliveries of a command before it is dead-lettered (MAX_DELIVERY_ATTEMPTS)."
  type        = number
  default     = 10

  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100
    error_message = "Pub/Sub allows 5 to 100 delivery attempts."
  }
}

variable "commands_exactly_once" {
  description = "Exactly-once delivery on the matcher's subscription (off: the matcher deduplicates by command id)."
  type        = bool
  default     = false
}

variable "topic_retention" {
  description = "How long each topic keeps messages, acknowledged or not, for replay by seek."
  type        = string
  default     = "86400s"

  validation {
    condition     = can(regex("^[0-9]+s$", var.topic_retention))
    error_message = "The retention is a duration in seconds, such as 86400s."
  }
}

variable "commands_publishers" {
  description = "Deployable name => IAM member allowed to publish commands."
  type        = map(string)
  default     = {}
}

variable "events_publishers" {
  description = "Deployable name => IAM member allowed to publish events."
  type        = map(string)
  default     = {}
}

variable "commands_subscribers" {
  description = "Deployable name => IAM member allowed to pull from the commands subscription."
  type        = map(string)
  default     = {}
}

variable "dead_letter_publishers" {
  description = "Deployable name => IAM member allowed to dead-letter commands itself (the matcher: those it refuses)."
  type        = map(string)
  default     = {}
}

variable "dead_letter_readers" {
  description = "Deployable name => IAM member allowed to pull (and acknowledge) the dead letters held for an operator."
  type        = map(string)
  default     = {}
}
