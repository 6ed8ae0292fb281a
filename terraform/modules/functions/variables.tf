variable "project_id" {
  description = "The project of the functions."
  type        = string
}

variable "region" {
  description = "The functions' region."
  type        = string
}

variable "name" {
  description = "Prefix of every function, job and bucket name."
  type        = string
}

variable "labels" {
  description = "Labels on every function and the sources bucket."
  type        = map(string)
  default     = {}
}

variable "manifest_path" {
  description = "The manifest.json written by `python -m infra.stage_functions`; the zips lie beside it."
  type        = string
}

variable "functions" {
  description = "Function name (functions/NAME, entry point NAME) => how it runs."
  type = map(object({
    description     = string
    trigger         = string # http | schedule
    schedule        = string # cron, for trigger = schedule ("" for http)
    service_account = string # email
    memory          = string
    cpu             = string
    timeout_seconds = number
    min_instances   = number
    max_instances   = number
    concurrency     = number
    env             = map(string)
    secret_env      = map(string) # variable => secret id (version "latest")
  }))

  validation {
    condition     = alltrue([for f in values(var.functions) : contains(["http", "schedule"], f.trigger)])
    error_message = "A function's trigger is http or schedule."
  }

  validation {
    condition = alltrue([
      for f in values(var.functions) :
      f.trigger == "http" ? f.schedule == "" : length(split(" ", f.schedule)) == 5
    ])
    error_message = "A scheduled function needs a five-field cron schedule; an HTTP function none."
  }

  validation {
    condition     = alltrue([for f in values(var.functions) : f.timeout_seconds >= 1 && f.timeout_seconds <= 3600])
    error_message = "An HTTP function's timeout is 1 to 3600 seconds."
  }
}

variable "vpc_connector" {
  description = "The Serverless VPC Access connector (private ranges only go through it)."
  type        = string
}

variable "build_service_account" {
  description = "The service account Cloud Build uses to build the functions (projects/P/serviceAccounts/EMAIL)."
  type        = string
}

variable "scheduler_service_account" {
  description = "Email of the service account Cloud Scheduler signs its OIDC tokens as."
  type        = string
}

variable "deletion_protection" {
  description = "Keep the sources bucket when destroying if it still holds objects."
  type        = bool
  default     = true
}
