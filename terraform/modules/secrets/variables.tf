variable "project_id" {
  description = "The project of the secrets."
  type        = string
}

variable "name" {
  description = "Prefix of every secret id."
  type        = string
}

variable "labels" {
  description = "Labels on every secret."
  type        = map(string)
  default     = {}
}

variable "secrets" {
  description = "Secret key (snake_case) => what it holds."
  type        = map(string)
}

variable "generated" {
  description = "Keys of the secrets whose value Terraform writes (from var.values)."
  type        = list(string)
  default     = []
}

variable "values" {
  description = "Key => value for the generated secrets."
  type        = map(string)
  default     = {}
  sensitive   = true
}

variable "accessors" {
  description = "Secret key => the deployables allowed to read it (names in var.members)."
  type        = map(list(string))

  validation {
    condition     = alltrue([for names in values(var.accessors) : length(names) == length(distinct(names))])
    error_message = "A deployable is listed twice for one secret."
  }
}

variable "members" {
  description = "Deployable name => its IAM member (serviceAccount:...)."
  type        = map(string)
}
