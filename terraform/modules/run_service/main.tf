# A Cloud Run service from one container image: the matcher (exactly one instance, CPU always
# allocated, internal only) and the ws service (scales out, session affinity, long requests,
# reached through the load balancer) both use it.
#
# Egress to the VPC (Cloud SQL's and Memorystore's private addresses) is direct VPC egress on
# the shared subnet, private ranges only; Google APIs are reached directly. Postgres is reached
# through the Cloud SQL Python connector (CLOUD_SQL_INSTANCE, shared/db.py), which needs
# roles/cloudsql.client on the service account and no Cloud SQL volume on the service.
#
# Probes: the startup probe and the liveness probe ask /healthz (the process answers). Readiness
# is deliberately not a startup condition for the matcher: a new revision's instance waits on
# the Postgres advisory lock until the old one stops, and Cloud Run stops the old one only
# after the new one has started.

terraform {
  required_version = ">= 1.0"
  required_providers {
    google = {
      source = "hashicorp/google"
    }
  }
}

resource "google_cloud_run_v2_service" "this" {
  project             = var.project_id
  location            = var.region
  name                = var.name
  description         = var.description
  ingress             = var.ingress
  labels              = var.labels
  deletion_protection = var.deletion_protection

  template {
    service_account                  = var.service_account
    execution_environment            = "EXECUTION_ENVIRONMENT_GEN2"
    timeout                          = "${var.timeout_seconds}s"
    max_instance_request_concurrency = var.concurrency
    session_affinity                 = var.session_affinity
    labels                           = var.labels

    scaling {
      min_instance_count = var.min_instances
      max_instance_count = var.max_instances
    }

    vpc_access {
      egress = "PRIVATE_RANGES_ONLY"
      network_interfaces {
        network    = var.network
        subnetwork = var.subnetwork
      }
    }

    containers {
      image = var.image

      ports {
        container_port = 8080
      }

      resources {
        limits = {
          cpu    = var.cpu
          memory = var.memory
        }
        cpu_idle          = !var.cpu_always_allocated
        startup_cpu_boost = true
      }

      dynamic "env" {
        for_each = var.env
        content {
          name  = env.key
          value = env.value
        }
      }

      dynamic "env" {
        for_each = var.secret_env
        content {
          name = env.key
          value_source {
            secret_key_ref {
              secret  = env.value
              version = "latest"
            }
          }
        }
      }

      startup_probe {
        period_seconds    = 5
        timeout_seconds   = 3
        failure_threshold = 24
        http_get {
          path = var.health_path
        }
      }

      liveness_probe {
        period_seconds    = 15
        timeout_seconds   = 5
        failure_threshold = 4
        http_get {
          path = var.health_path
        }
      }
    }
  }

  traffic {
    type    = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"
    percent = 100
  }
}

resource "google_cloud_run_v2_service_iam_member" "invokers" {
  for_each = var.invokers

  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_service.this.name
  role     = "roles/run.invoker"
  member   = each.value # checkov:skip=CKV_GCP_102:only the ws service gets allUsers, and it is reachable only through the load balancer (ingress INTERNAL_LOAD_BALANCER); it authenticates clients itself
}
