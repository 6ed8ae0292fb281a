variable "project_id" {
  description = "The project of the service."
  type        = string
}

variable "region" {
  description = "The service's region."
  type        = string
}

variable "name" {
  description = "The service's name."
  type        = string
}

variable "description" {
  description = "What the service does."
  type        = string
}

variable "labels" {
  description = "Labels on the service and its revisions."
  type        = map(string)
  default     = {}
}

variable "image" {
  description = "The container image (REGISTRY/PROJECT/REPO/NAME:TAG)."
  type        = string
}

variable "service_account" {
  description = "Email of the service's own service account."
  type        = string
}

variable "ingress" {
  description = "INGRESS_TRAFFIC_INTERNAL_ONLY or INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER (never ALL)."
  type        = string

  validation {
    condition     = contains(["INGRESS_TRAFFIC_INTERNAL_ONLY", "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"], var.ingress)
    error_message = "Ingress must be internal only or internal and load balancer."
  }
}

variable "invokers" {
  description = "Key => IAM member allowed to invoke the service."
  type        = map(string)
  default     = {}
}

variable "min_instances" {
  description = "Instances kept running."
  type        = number
}

variable "max_instances" {
  description = "Most instances."
  type        = number

  validation {
    condition     = var.max_instances >= 1
    error_message = "At least one instance."
  }
}

variable "cpu" {
  description = "vCPUs per instance (\"1\", \"2\", ...)."
  type        = string
  default     = "1"
}

variable "memory" {
  description = "Memory per instance (\"512Mi\", \"1Gi\", ...)."
  type        = string
  default     = "512Mi"

  validation {
    condition     = can(regex("^[0-9]+(Mi|Gi)$", var.memory))
    error_message = "Memory is a number of Mi or Gi."
  }
}

variable "cpu_always_allocated" {
  description = "CPU allocated outside requests too (instance-based billing): work in the background."
  type        = bool
  default     = false
}

variable "concurrency" {
  description = "Requests (or WebSocket connections) one instance takes at once."
  type        = number
  default     = 80
}

variable "timeout_seconds" {
  description = "Longest request (a WebSocket connection is one request)."
  type        = number
  default     = 300

  validation {
    condition     = var.timeout_seconds >= 1 && var.timeout_seconds <= 3600
    error_message = "Cloud Run requests last 1 to 3600 seconds."
  }
}

variable "session_affinity" {
  description = "Send a client's requests to the same instance while it exists."
  type        = bool
  default     = false
}

variable "health_path" {
  description = "Path of the liveness and startup probes."
  type        = string
  default     = "/healthz"
}

variable "env" {
  description = "Plain environment variables (not PORT: Cloud Run sets it)."
  type        = map(string)
  default     = {}

  validation {
    condition     = !contains(keys(var.env), "PORT")
    error_message = "Cloud Run sets PORT itself."
  }
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
  description = "Refuse to delete the service."
  type        = bool
  default     = true
}
