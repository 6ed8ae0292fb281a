# One service account per deployable (each Cloud Function, the matcher, the ws service, the
# migration job) plus the Cloud Scheduler invoker and the functions' build account. Each gets
# only the project-level roles in var.project_roles (roles that have no narrower resource);
# topic, subscription, secret and invoker grants are made on those resources by their modules.
# No primitive role (owner, editor, viewer) anywhere.

terraform {
  required_version = ">= 1.0"
  required_providers {
    google = {
      source = "hashicorp/google"
    }
  }
}

resource "google_service_account" "this" {
  for_each = var.accounts

  project      = var.project_id
  account_id   = "${var.name}-${each.key}"
  display_name = "${var.name} ${each.key}"
  description  = each.value
}

locals {
  project_bindings = flatten([
    for name, roles in var.project_roles : [
      for role in roles : {
        id   = "${name}/${role}"
        name = name
        role = role
      }
    ]
  ])
}

resource "google_project_iam_member" "this" {
  for_each = { for b in local.project_bindings : b.id => b }

  project = var.project_id
  role    = each.value.role
  member  = "serviceAccount:${google_service_account.this[each.value.name].email}"
}

# Roles granted only on resources whose names match a condition (the functions' build account:
# its sources and its image repository, not every bucket and repository of the project).
resource "google_project_iam_member" "conditional" {
  for_each = var.conditional_roles

  project = var.project_id
  role    = each.value.role
  member  = "serviceAccount:${google_service_account.this[each.value.account].email}"

  condition {
    title       = each.value.title
    description = each.value.title
    expression  = each.value.expression
  }
}
