variable "project_id" {
  description = "The project of the instance."
  type        = string
}

variable "region" {
  description = "The instance's region (the same as the services')."
  type        = string
}

variable "name" {
  description = "Prefix of the instance's name."
  type        = string
}

variable "network_id" {
  description = "The VPC the instance gets its private address in (private services access must be set up)."
  type        = string
}

variable "labels" {
  description = "Labels on the instance."
  type        = map(string)
  default     = {}
}

variable "tier" {
  description = "Machine tier: db-f1-micro is the smallest (shared core, no SLA); db-custom-1-3840 or larger for production."
  type        = string
  default     = "db-f1-micro"

  validation {
    condition     = can(regex("^db-(f1-micro|g1-small|custom-[0-9]+-[0-9]+|perf-optimized-N-[0-9]+)$", var.tier))
    error_message = "The tier must be db-f1-micro, db-g1-small or db-custom-CPUS-MEMORY_MB."
  }
}

variable "availability_type" {
  description = "ZONAL (one zone) or REGIONAL (a standby in a second zone, twice the cost)."
  type        = string
  default     = "ZONAL"

  validation {
    condition     = contains(["ZONAL", "REGIONAL"], var.availability_type)
    error_message = "The availability type must be ZONAL or REGIONAL."
  }
}

variable "disk_size_gb" {
  description = "Initial SSD size in GB (it grows automatically)."
  type        = number
  default     = 10

  validation {
    condition     = var.disk_size_gb >= 10
    error_message = "Cloud SQL disks are at least 10 GB."
  }
}

variable "max_connections" {
  description = "Postgres max_connections: the matcher holds 2, each function instance that uses Postgres 1, the migration job 1."
  type        = number
  default     = 50

  validation {
    condition     = var.max_connections >= 25 && var.max_connections <= 1000
    error_message = "The max_connections must be 25 to 1000."
  }
}

variable "retained_backups" {
  description = "Daily backups kept."
  type        = number
  default     = 14

  validation {
    condition     = var.retained_backups >= 7 && var.retained_backups <= 365
    error_message = "Keep 7 to 365 backups."
  }
}

variable "log_retention_days" {
  description = "Days of write-ahead log kept for point-in-time recovery."
  type        = number
  default     = 7

  validation {
    condition     = var.log_retention_days >= 1 && var.log_retention_days <= 7
    error_message = "Point-in-time recovery keeps 1 to 7 days of logs on the ENTERPRISE edition."
  }
}

variable "deletion_protection" {
  description = "Refuse to delete the instance (both in Terraform and in the API)."
  type        = bool
  default     = true
}

variable "database_name" {
  description = "The application's database (PGDATABASE)."
  type        = string
  default     = "exchange"
}

variable "user_name" {
  description = "The application's database user (PGUSER)."
  type        = string
  default     = "exchange"
}
