variable "project_id" {
  description = "The project that holds the network."
  type        = string
}

variable "region" {
  description = "The region of the subnet and the connector."
  type        = string
}

variable "name" {
  description = "Prefix of every resource name."
  type        = string
}

variable "subnet_cidr" {
  description = "The subnet's range; Cloud Run services and jobs take their egress addresses from it."
  type        = string
  default     = "10.10.0.0/24"

  validation {
    condition     = can(cidrhost(var.subnet_cidr, 0))
    error_message = "The subnet_cidr must be a CIDR range such as 10.10.0.0/24."
  }
}

variable "connector_cidr" {
  description = "A /28 for the Serverless VPC Access connector, unused elsewhere in the VPC."
  type        = string
  default     = "10.8.0.0/28"

  validation {
    condition     = can(cidrhost(var.connector_cidr, 0)) && can(regex("/28$", var.connector_cidr))
    error_message = "The connector_cidr must be a /28 range."
  }
}

variable "private_services_prefix_length" {
  description = "Size of the range allocated to private services access (Cloud SQL, Memorystore)."
  type        = number
  default     = 20

  validation {
    condition     = var.private_services_prefix_length >= 16 && var.private_services_prefix_length <= 24
    error_message = "The prefix length must be between 16 and 24."
  }
}

variable "connector_machine_type" {
  description = "Machine type of the connector's instances (e2-micro is the smallest)."
  type        = string
  default     = "e2-micro"

  validation {
    condition     = contains(["e2-micro", "f1-micro", "e2-standard-4"], var.connector_machine_type)
    error_message = "The connector machine type must be e2-micro, f1-micro or e2-standard-4."
  }
}

variable "connector_max_instances" {
  description = "Most connector instances (at least 3; the minimum is 2)."
  type        = number
  default     = 3

  validation {
    condition     = var.connector_max_instances >= 3 && var.connector_max_instances <= 10
    error_message = "The connector's max instances must be 3 to 10."
  }
}

variable "flow_log_sampling" {
  description = "Fraction of the subnet's flows logged (0 to 1)."
  type        = number
  default     = 0.1

  validation {
    condition     = var.flow_log_sampling > 0 && var.flow_log_sampling <= 1
    error_message = "The flow log sampling must be in (0, 1]."
  }
}
