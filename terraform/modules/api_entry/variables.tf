variable "project_id" {
  description = "The project of the load balancer."
  type        = string
}

variable "region" {
  description = "The region of the serverless backends."
  type        = string
}

variable "name" {
  description = "Prefix of every resource name."
  type        = string
}

variable "labels" {
  description = "Labels on the forwarding rules."
  type        = map(string)
  default     = {}
}

variable "domain" {
  description = "The API's host name (an A record must point at the output ip_address); empty: IP.sslip.io."
  type        = string
  default     = ""

  validation {
    condition     = var.domain == "" || can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,}$", var.domain))
    error_message = "The domain must be a lowercase host name such as api.example.com, or empty."
  }
}

variable "function_backends" {
  description = "Backend key => Cloud Function (2nd gen) name."
  type        = map(string)
}

variable "run_backends" {
  description = "Backend key => Cloud Run service name."
  type        = map(string)
  default     = {}
}

variable "routes" {
  description = "In precedence order: path prefix, method (\"\" for any) and backend key."
  type = list(object({
    prefix  = string
    method  = string
    backend = string
  }))

  validation {
    condition     = alltrue([for r in var.routes : can(regex("^/[a-z0-9/._-]*[a-z0-9._-]$", r.prefix))])
    error_message = "A route prefix starts with / and does not end with /."
  }

  validation {
    condition     = alltrue([for r in var.routes : contains(["", "GET", "POST", "PUT", "PATCH", "DELETE"], r.method)])
    error_message = "A route's method is empty (any) or GET, POST, PUT, PATCH, DELETE."
  }
}

variable "default_backend" {
  description = "Backend key of everything no route matches (it answers 404 in the API's format)."
  type        = string
}

variable "log_sample_rate" {
  description = "Fraction of requests logged by the load balancer."
  type        = number
  default     = 1

  validation {
    condition     = var.log_sample_rate >= 0 && var.log_sample_rate <= 1
    error_message = "The sample rate is between 0 and 1."
  }
}

variable "security_policy" {
  description = "A Cloud Armor policy (id) on every backend; empty for none."
  type        = string
  default     = ""
}

variable "web_backend_bucket" {
  description = "The web page's backend bucket (modules/web) for /, /index.html and /assets/; empty for none."
  type        = string
  default     = ""

  validation {
    condition     = var.web_backend_bucket == "" || can(regex("backendBuckets/", var.web_backend_bucket))
    error_message = "Give a backend bucket's id (projects/P/global/backendBuckets/NAME), or empty."
  }
}
