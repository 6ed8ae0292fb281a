variable "project_id" {
  description = "The project of the instance."
  type        = string
}

variable "region" {
  description = "The instance's region."
  type        = string
}

variable "name" {
  description = "Prefix of the instance's name."
  type        = string
}

variable "network_id" {
  description = "The VPC the instance is reachable from (private services access must be set up)."
  type        = string
}

variable "reserved_ip_range" {
  description = "The private services access range to take the instance's address from."
  type        = string
}

variable "labels" {
  description = "Labels on the instance."
  type        = map(string)
  default     = {}
}

variable "tier" {
  description = "BASIC (one node, the smallest) or STANDARD_HA (a replica, automatic failover)."
  type        = string
  default     = "BASIC"

  validation {
    condition     = contains(["BASIC", "STANDARD_HA"], var.tier)
    error_message = "The tier must be BASIC or STANDARD_HA."
  }
}

variable "memory_size_gb" {
  description = "Memory in GB (1 is the smallest)."
  type        = number
  default     = 1

  validation {
    condition     = var.memory_size_gb >= 1 && var.memory_size_gb <= 300
    error_message = "Memorystore instances have 1 to 300 GB."
  }
}
