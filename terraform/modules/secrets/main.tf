# Secret Manager: every secret of the deployment, and who may read each one.
#
# Two kinds:
# - filled by an operator (docs/deploy.md): the API's auth keys document (JWT signing keys and
#   API-key masters), the HD wallet mnemonic, the hot wallet's and the gas wallet's private
#   keys. Terraform creates only the empty secret, so no value ever lands in Terraform state.
# - filled by Terraform (var.generated): the database password and REDIS_URL (with the Redis
#   AUTH string), values Terraform made or read anyway.
#
# Access is per secret and per service account (roles/secretmanager.secretAccessor on the
# secret, never on the project): var.accessors names, for each secret, the deployables that
# read it, and nothing else gets a binding.

terraform {
  required_version = ">= 1.0"
  required_providers {
    google = {
      source = "hashicorp/google"
    }
  }
}

locals {
  bindings = flatten([
    for key, names in var.accessors : [
      for name in names : {
        id     = "${key}/${name}"
        secret = key
        member = var.members[name]
      }
    ]
  ])
}

resource "google_secret_manager_secret" "this" {
  for_each = var.secrets

  project   = var.project_id
  secret_id = "${var.name}-${replace(each.key, "_", "-")}"
  labels    = merge(var.labels, { purpose = replace(each.key, "_", "-") })
  annotations = {
    description = each.value
  }

  replication {
    auto {}
  }
}

resource "google_secret_manager_secret_version" "generated" {
  for_each = toset(var.generated)

  secret      = google_secret_manager_secret.this[each.key].id
  secret_data = var.values[each.key]
}

resource "google_secret_manager_secret_iam_member" "accessor" {
  for_each = { for b in local.bindings : b.id => b }

  project   = var.project_id
  secret_id = google_secret_manager_secret.this[each.value.secret].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = each.value.member
}
