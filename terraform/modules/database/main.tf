# Cloud SQL for PostgreSQL 15 (the version the project develops and tests against): private IP
# only (no public address, no authorized networks), clients must come through the Cloud SQL
# connector (TRUSTED_CLIENT_CERTIFICATE_REQUIRED: the connector presents an ephemeral client
# certificate, and only identities with roles/cloudsql.client can get one), daily backups with
# point-in-time recovery, and the logging flags an operator and an auditor want.
#
# The application connects as one built-in user whose random password Terraform keeps in
# Secret Manager (the secrets module, key db_password); shared/db.py passes it to the connector.
# Every deployable that uses Postgres reads the same user: the read-only functions (queries,
# orders, admin) only ever run SELECTs, but a separate read-only role is a hardening step left
# to do (docs/deploy.md).

terraform {
  required_version = ">= 1.0"
  required_providers {
    google = {
      source = "hashicorp/google"
    }
    random = {
      source = "hashicorp/random"
    }
  }
}

resource "random_id" "instance_suffix" {
  byte_length = 2 # a deleted instance's name cannot be reused for a week
}

resource "random_password" "app" {
  length  = 32
  special = false
}

resource "google_sql_database_instance" "postgres" {
  project             = var.project_id
  name                = "${var.name}-pg-${random_id.instance_suffix.hex}"
  region              = var.region
  database_version    = "POSTGRES_15"
  deletion_protection = var.deletion_protection

  settings {
    tier                        = var.tier
    edition                     = "ENTERPRISE"
    availability_type           = var.availability_type
    disk_type                   = "PD_SSD"
    disk_size                   = var.disk_size_gb
    disk_autoresize             = true
    deletion_protection_enabled = var.deletion_protection
    user_labels                 = var.labels

    ip_configuration {
      ipv4_enabled    = false
      private_network = var.network_id
      ssl_mode        = "TRUSTED_CLIENT_CERTIFICATE_REQUIRED"
    }

    backup_configuration {
      enabled                        = true
      start_time                     = "02:00"
      point_in_time_recovery_enabled = true
      transaction_log_retention_days = var.log_retention_days

      backup_retention_settings {
        retained_backups = var.retained_backups
        retention_unit   = "COUNT"
      }
    }

    maintenance_window {
      day          = 7 # Sunday
      hour         = 3
      update_track = "stable"
    }

    insights_config {
      query_insights_enabled  = true
      query_string_length     = 1024
      record_application_tags = false
      record_client_address   = false
    }

    database_flags {
      name  = "max_connections"
      value = tostring(var.max_connections)
    }
    database_flags {
      name  = "log_checkpoints"
      value = "on"
    }
    database_flags {
      name  = "log_connections"
      value = "on"
    }
    database_flags {
      name  = "log_disconnections"
      value = "on"
    }
    database_flags {
      name  = "log_lock_waits"
      value = "on"
    }
    database_flags {
      name  = "log_min_messages"
      value = "error"
    }
    database_flags {
      name  = "log_min_error_statement"
      value = "error"
    }
    database_flags {
      name  = "log_temp_files"
      value = "0"
    }
    database_flags {
      name  = "log_min_duration_statement"
      value = "-1"
    }
    database_flags {
      name  = "log_statement"
      value = "ddl"
    }
    database_flags {
      name  = "log_hostname"
      value = "on"
    }
    database_flags {
      name  = "cloudsql.enable_pgaudit"
      value = "on"
    }
    database_flags {
      name  = "pgaudit.log"
      value = "ddl,role"
    }
  }
}

resource "google_sql_database" "exchange" {
  project  = var.project_id
  name     = var.database_name
  instance = google_sql_database_instance.postgres.name
}

resource "google_sql_user" "app" {
  project         = var.project_id
  name            = var.user_name
  instance        = google_sql_database_instance.postgres.name
  password        = random_password.app.result
  deletion_policy = "ABANDON"
}
