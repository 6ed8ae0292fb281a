# One-time setup of a project, run by a person with the Owner role (docs/deploy.md, step 2):
# the APIs, the bucket of Terraform's state, the Artifact Registry repository of the images,
# and the service account Cloud Build deploys as, with the roles that needs and no more.
#
# Its own state starts local; docs/deploy.md moves it into the bucket it made.

terraform {
  required_version = ">= 1.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.20"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}

locals {
  # Every API the environment roots use.
  services = [
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "cloudscheduler.googleapis.com",
    "compute.googleapis.com",
    "firestore.googleapis.com",
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "redis.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "servicenetworking.googleapis.com",
    "serviceusage.googleapis.com",
    "sqladmin.googleapis.com",
    "storage.googleapis.com",
    "vpcaccess.googleapis.com",
  ]

  # What `terraform apply` of an environment root creates and changes, and nothing more. No
  # primitive role; the project-IAM role below can grant only the roles in grantable_roles.
  deployer_roles = [
    "roles/cloudfunctions.developer",
    "roles/cloudscheduler.admin",
    "roles/cloudsql.admin",
    "roles/compute.loadBalancerAdmin",
    "roles/compute.networkAdmin",
    "roles/compute.securityAdmin",
    "roles/datastore.owner",
    "roles/logging.configWriter",
    "roles/logging.logWriter",
    "roles/monitoring.editor",
    "roles/pubsub.admin",
    "roles/redis.admin",
    "roles/run.admin",
    "roles/servicenetworking.networksAdmin",
    "roles/serviceusage.serviceUsageConsumer",
    "roles/storage.admin",
    "roles/vpcaccess.admin",
  ]

  # The project-level roles the environment root grants to the deployables' service accounts.
  grantable_roles = [
    "roles/artifactregistry.writer",
    "roles/cloudsql.client",
    "roles/datastore.user",
    "roles/datastore.viewer",
    "roles/logging.logWriter",
    "roles/storage.objectViewer",
  ]
}

module "services" {
  source = "../modules/project_services"

  project_id = var.project_id
  services   = local.services
}

resource "google_storage_bucket" "tfstate" {
  project                     = var.project_id
  name                        = "${var.project_id}-${var.name}-tfstate"
  location                    = var.state_location
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  versioning {
    enabled = true
  }

  # Keep the last 20 versions of each state file.
  lifecycle_rule {
    condition {
      num_newer_versions = 20
      with_state         = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [module.services]
}

resource "google_artifact_registry_repository" "images" {
  project       = var.project_id
  location      = var.region
  repository_id = var.artifact_repository
  format        = "DOCKER"
  description   = "The exchange's container images (matcher, ws), tagged with the commit."

  cleanup_policy_dry_run = false

  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 20
    }
  }

  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      older_than = "2592000s" # 30 days, unless among the 20 most recent
    }
  }

  depends_on = [module.services]
}

resource "google_service_account" "deployer" {
  project      = var.project_id
  account_id   = "${var.name}-deployer"
  display_name = "${var.name} deployer (Cloud Build)"
  description  = "Cloud Build runs the pipeline (cloudbuild.yaml) as this account."

  depends_on = [module.services]
}

resource "google_project_iam_member" "deployer" {
  for_each = toset(local.deployer_roles)

  project = var.project_id
  role    = each.value
  member  = "serviceAccount:${google_service_account.deployer.email}"
}

# Secret Manager without reading secrets: the deployer creates the secrets, adds the versions
# Terraform generates and binds each secret's readers, but cannot read a payload (no
# secretmanager.versions.access), so the pipeline never holds the wallet's keys, the auth keys
# or the command-signing keys (docs/decisions/0021).
resource "google_project_iam_custom_role" "secrets_deployer" {
  project     = var.project_id
  role_id     = "${replace(var.name, "-", "_")}_secrets_deployer"
  title       = "${var.name} secrets deployer"
  description = "Manage secrets, their versions and their IAM; never read a payload."
  permissions = [
    "secretmanager.locations.get",
    "secretmanager.locations.list",
    "secretmanager.secrets.create",
    "secretmanager.secrets.delete",
    "secretmanager.secrets.get",
    "secretmanager.secrets.getIamPolicy",
    "secretmanager.secrets.list",
    "secretmanager.secrets.setIamPolicy",
    "secretmanager.secrets.update",
    "secretmanager.versions.add",
    "secretmanager.versions.destroy",
    "secretmanager.versions.disable",
    "secretmanager.versions.enable",
    "secretmanager.versions.get",
    "secretmanager.versions.list",
  ]
}

resource "google_project_iam_member" "deployer_secrets" {
  project = var.project_id
  role    = google_project_iam_custom_role.secrets_deployer.id
  member  = "serviceAccount:${google_service_account.deployer.email}"
}

# Terraform reads back only the versions it wrote itself (the database password, REDIS_URL).
resource "google_project_iam_member" "deployer_generated_secrets" {
  project = var.project_id
  role    = "roles/secretmanager.secretAccessor"
  member  = "serviceAccount:${google_service_account.deployer.email}"

  condition {
    title       = "generated secrets only"
    description = "The secrets Terraform generates; never the wallet's, the auth or the command keys."
    expression  = "resource.name.extract(\"/secrets/{name}/\").endsWith(\"-db-password\") || resource.name.extract(\"/secrets/{name}/\").endsWith(\"-redis-url\")"
  }
}

# Creating the deployables' service accounts and deploying code that runs as them: the pipeline
# needs both, for accounts that the same apply may create.
resource "google_project_iam_member" "deployer_service_accounts" {
  for_each = toset(["roles/iam.serviceAccountAdmin", "roles/iam.serviceAccountUser"])

  project = var.project_id
  role    = each.value
  member  = "serviceAccount:${google_service_account.deployer.email}"
  # checkov:skip=CKV_GCP_41:the deployer must act as every runtime service account it deploys, including ones the same apply creates
  # checkov:skip=CKV_GCP_49:the deployer creates the runtime service accounts; it is the pipeline's identity, not a workload's
}

# Project IAM, limited to granting the roles the environment root grants.
resource "google_project_iam_member" "deployer_iam" {
  project = var.project_id
  role    = "roles/resourcemanager.projectIamAdmin"
  member  = "serviceAccount:${google_service_account.deployer.email}"

  condition {
    title       = "grant only the deployables' roles"
    description = "The environment root grants these project-level roles and no others."
    expression  = "api.getAttribute('iam.googleapis.com/modifiedGrantsByRole', []).hasOnly([${join(", ", [for r in local.grantable_roles : "'${r}'"])}])"
  }
}

resource "google_artifact_registry_repository_iam_member" "deployer_push" {
  project    = var.project_id
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.writer"
  member     = "serviceAccount:${google_service_account.deployer.email}"
}
