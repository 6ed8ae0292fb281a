# The private network: a VPC with one regional subnet (Cloud Run's direct VPC egress uses it),
# private services access (the peering Cloud SQL and Memorystore get their private addresses
# from) and a Serverless VPC Access connector (how Cloud Functions reach those addresses).
# Nothing here has a public address; ingress is denied (and logged) except what Google's
# serverless infrastructure itself needs.

terraform {
  required_version = ">= 1.0"
  required_providers {
    google = {
      source = "hashicorp/google"
    }
  }
}

resource "google_compute_network" "vpc" {
  project                 = var.project_id
  name                    = "${var.name}-vpc"
  auto_create_subnetworks = false
  routing_mode            = "REGIONAL"
}

resource "google_compute_subnetwork" "main" {
  project                  = var.project_id
  name                     = "${var.name}-${var.region}"
  region                   = var.region
  network                  = google_compute_network.vpc.id
  ip_cidr_range            = var.subnet_cidr
  private_ip_google_access = true

  # Sampled flow logs: enough to investigate a connection problem, cheap at this volume.
  log_config {
    aggregation_interval = "INTERVAL_10_MIN"
    flow_sampling        = var.flow_log_sampling
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

# Explicit lowest-priority deny of all ingress, logged. (The VPC's implied rule denies too, but
# does not log.) The connector's own rules, created by Google at priority 1000, still apply.
resource "google_compute_firewall" "deny_all_ingress" {
  project     = var.project_id
  name        = "${var.name}-deny-all-ingress"
  network     = google_compute_network.vpc.id
  direction   = "INGRESS"
  priority    = 65534
  description = "Deny everything not allowed by a more specific rule."

  deny {
    protocol = "all"
  }

  source_ranges = ["0.0.0.0/0"]

  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
}

# Private services access: one allocated range, peered with Google's service producer network.
# Cloud SQL (private IP only) and Memorystore (PRIVATE_SERVICE_ACCESS) take addresses from it.
resource "google_compute_global_address" "private_services" {
  project       = var.project_id
  name          = "${var.name}-private-services"
  purpose       = "VPC_PEERING"
  address_type  = "INTERNAL"
  prefix_length = var.private_services_prefix_length
  network       = google_compute_network.vpc.id
}

resource "google_service_networking_connection" "private_services" {
  network                 = google_compute_network.vpc.id
  service                 = "servicenetworking.googleapis.com"
  reserved_peering_ranges = [google_compute_global_address.private_services.name]
}

# Cloud Functions (2nd gen) reach private addresses through a connector; only private ranges
# go through it (PRIVATE_RANGES_ONLY on each function), the rest (Google APIs, the Ethereum RPC)
# leaves directly.
resource "google_vpc_access_connector" "functions" {
  project       = var.project_id
  name          = "${var.name}-fn"
  region        = var.region
  network       = google_compute_network.vpc.name
  ip_cidr_range = var.connector_cidr
  machine_type  = var.connector_machine_type
  min_instances = 2
  max_instances = var.connector_max_instances
}
