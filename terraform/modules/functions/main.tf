# The Cloud Functions (2nd gen, Python), their sources and their triggers.
#
# Sources: infra/stage_functions.py stages each function (its folder, the project's packages
# it imports and its requirements.txt) into a deterministic zip named with its content hash, and lists
# them in a manifest. Each zip is uploaded here under that name, so a function whose content
# changed gets a new object and is rebuilt and redeployed; the others are left alone. A
# function declared in var.functions but missing from the manifest fails the plan.
#
# Who can call what:
# - HTTP functions: ingress ALLOW_INTERNAL_AND_GCLB, so the only way in from the internet is
#   the API's HTTPS load balancer (modules/api_entry); their run.app and cloudfunctions.net
#   URLs refuse outside traffic. The load balancer cannot attach an identity, so the invoker
#   binding is allUsers; authentication is the API's own (JWT / API keys, api/auth.py).
# - Scheduled functions: ingress ALLOW_INTERNAL_ONLY (Cloud Scheduler of the same project
#   counts as internal) and no public binding: only the scheduler's service account may invoke
#   them, with an OIDC token whose audience is the function's URL.

terraform {
  required_version = ">= 1.0"
  required_providers {
    google = {
      source = "hashicorp/google"
    }
  }
}

locals {
  manifest     = jsondecode(file(var.manifest_path))
  manifest_dir = dirname(var.manifest_path)
  http         = { for k, f in var.functions : k => f if f.trigger == "http" }
  scheduled    = { for k, f in var.functions : k => f if f.trigger == "schedule" }
}

resource "google_storage_bucket" "sources" {
  project                     = var.project_id
  name                        = "${var.project_id}-${var.name}-fn-sources"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = !var.deletion_protection
  labels                      = var.labels

  versioning {
    enabled = true
  }

  # Old uploads are useless once a newer one is deployed: keep a month of them for rollbacks.
  lifecycle_rule {
    condition {
      age = 30
    }
    action {
      type = "Delete"
    }
  }
}

resource "google_storage_bucket_object" "source" {
  for_each = var.functions

  bucket = google_storage_bucket.sources.name
  name   = local.manifest.functions[each.key].object
  source = "${local.manifest_dir}/${local.manifest.functions[each.key].zip}"
}

resource "google_cloudfunctions2_function" "this" {
  for_each = var.functions

  project     = var.project_id
  location    = var.region
  name        = "${var.name}-${each.key}"
  description = each.value.description
  labels      = var.labels

  build_config {
    runtime         = local.manifest.runtime
    entry_point     = local.manifest.functions[each.key].entry_point
    service_account = var.build_service_account

    source {
      storage_source {
        bucket = google_storage_bucket.sources.name
        object = google_storage_bucket_object.source[each.key].name
      }
    }
  }

  service_config {
    service_account_email            = each.value.service_account
    available_memory                 = each.value.memory
    available_cpu                    = each.value.cpu
    timeout_seconds                  = each.value.timeout_seconds
    min_instance_count               = each.value.min_instances
    max_instance_count               = each.value.max_instances
    max_instance_request_concurrency = each.value.concurrency
    ingress_settings                 = each.value.trigger == "http" ? "ALLOW_INTERNAL_AND_GCLB" : "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision   = true
    vpc_connector                    = var.vpc_connector
    vpc_connector_egress_settings    = "PRIVATE_RANGES_ONLY"
    environment_variables            = each.value.env

    dynamic "secret_environment_variables" {
      for_each = each.value.secret_env
      content {
        key        = secret_environment_variables.key
        project_id = var.project_id
        secret     = secret_environment_variables.value
        version    = "latest"
      }
    }
  }
}

# HTTP functions: reachable from the internet only through the load balancer (ingress above).
resource "google_cloud_run_service_iam_member" "public" {
  for_each = local.http

  project  = var.project_id
  location = var.region
  service  = google_cloudfunctions2_function.this[each.key].name
  role     = "roles/run.invoker"
  member   = "allUsers" # checkov:skip=CKV_GCP_102:behind the load balancer only (ingress ALLOW_INTERNAL_AND_GCLB); the API authenticates each request itself
}

# Scheduled functions: only the scheduler's service account.
resource "google_cloud_run_service_iam_member" "scheduler" {
  for_each = local.scheduled

  project  = var.project_id
  location = var.region
  service  = google_cloudfunctions2_function.this[each.key].name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${var.scheduler_service_account}"
}

# One job per scheduled function. Every minute is the finest schedule Cloud Scheduler allows.
# No retries: the next tick is the retry, and each function is safe to run again or twice at
# once (max_instances 1 and concurrency 1 make an overlapping call wait or fail fast).
resource "google_cloud_scheduler_job" "this" {
  for_each = local.scheduled

  project          = var.project_id
  region           = var.region
  name             = "${var.name}-${each.key}"
  description      = "Runs the ${each.key} function (${each.value.description})."
  schedule         = each.value.schedule
  time_zone        = "Etc/UTC"
  attempt_deadline = "${min(each.value.timeout_seconds + 30, 1800)}s"

  retry_config {
    retry_count = 0
  }

  http_target {
    http_method = "POST"
    uri         = google_cloudfunctions2_function.this[each.key].service_config[0].uri

    oidc_token {
      service_account_email = var.scheduler_service_account
      audience              = google_cloudfunctions2_function.this[each.key].service_config[0].uri
    }
  }

  depends_on = [google_cloud_run_service_iam_member.scheduler]
}
