# Memorystore for Redis: market data, replies, rate limits and the live-update channels. It has
# no public address: it is reachable only inside the VPC, through private services access, and
# it requires the AUTH string, which Terraform puts into REDIS_URL in Secret Manager (the
# secrets module, key redis_url) rather than into any plain environment variable.
#
# In-transit encryption is off: the clients (redis-py from REDIS_URL) would need Memorystore's
# server CA in every function and container; the traffic never leaves the private peering.

terraform {
  required_version = ">= 1.0"
  required_providers {
    google = {
      source = "hashicorp/google"
    }
  }
}

resource "google_redis_instance" "cache" {
  project        = var.project_id
  name           = "${var.name}-redis"
  region         = var.region
  tier           = var.tier
  memory_size_gb = var.memory_size_gb
  redis_version  = "REDIS_7_2"
  labels         = var.labels

  authorized_network      = var.network_id
  connect_mode            = "PRIVATE_SERVICE_ACCESS"
  reserved_ip_range       = var.reserved_ip_range
  auth_enabled            = true
  transit_encryption_mode = "DISABLED"

  redis_configs = {
    # Keys with a TTL (replies, rate limits, idempotency keys) may be evicted under memory
    # pressure; market data (no TTL) never is.
    "maxmemory-policy" = "volatile-lru"
  }

  maintenance_policy {
    weekly_maintenance_window {
      day = "SUNDAY"
      start_time {
        hours   = 3
        minutes = 0
        seconds = 0
        nanos   = 0
      }
    }
  }
}

locals {
  url = "redis://:${urlencode(google_redis_instance.cache.auth_string)}@${google_redis_instance.cache.host}:${google_redis_instance.cache.port}/0"
}
