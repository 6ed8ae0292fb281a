# The command and event buses (ARCHITECTURE.md, section 2).
#
# commands: every order, cancel, deposit and withdrawal, published with ordering key = user id.
#   The matcher's subscription keeps that order (enable_message_ordering), redelivers a nacked
#   or expired message with backoff (retry_policy), and after max_delivery_attempts hands it to
#   the dead-letter topic, where a hold subscription keeps it for an operator. Pub/Sub's service
#   agent must be able to publish to the dead-letter topic and to ack on the source subscription
#   for that hand-over: both grants are below.
#   Exactly-once delivery is off by default on this subscription: the matcher already drops a
#   redelivered command by its id (the oplog's unique command id), acks only after the batch is
#   durable in Postgres, and exactly-once would add latency on the hot path and turn a late ack
#   into an error the matcher would have to handle. var.commands_exactly_once turns it on.
# events: what the matcher applied, for durable consumers. No deployable subscribes yet (the
#   wallet jobs read Postgres), so the topic has no subscription; it keeps messages for
#   topic_retention, so a consumer added later can seek back. A consumer whose handling is not
#   idempotent is where exactly-once delivery applies: give its subscription
#   enable_exactly_once_delivery = true.

terraform {
  required_version = ">= 1.0"
  required_providers {
    google = {
      source = "hashicorp/google"
    }
  }
}

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  pubsub_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

resource "google_pubsub_topic" "commands" {
  project                    = var.project_id
  name                       = var.commands_topic
  message_retention_duration = var.topic_retention
  labels                     = var.labels
}

resource "google_pubsub_topic" "events" {
  project                    = var.project_id
  name                       = var.events_topic
  message_retention_duration = var.topic_retention
  labels                     = var.labels
}

resource "google_pubsub_topic" "dead_letter" {
  project                    = var.project_id
  name                       = var.dead_letter_topic
  message_retention_duration = var.topic_retention
  labels                     = var.labels
}

resource "google_pubsub_subscription" "commands_matcher" {
  project = var.project_id
  name    = var.commands_subscription
  topic   = google_pubsub_topic.commands.id
  labels  = var.labels

  enable_message_ordering      = true
  enable_exactly_once_delivery = var.commands_exactly_once
  # The matcher's lease (shared/pubsub.py COMMANDS_ACK_DEADLINE_S), renewed while it holds a
  # batch: a dead matcher's commands, and every later one of their users, wait at most this.
  ack_deadline_seconds       = 10
  message_retention_duration = "604800s"
  retain_acked_messages      = false

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = var.max_delivery_attempts
  }

  retry_policy {
    minimum_backoff = "1s"
    maximum_backoff = "60s"
  }

  expiration_policy {
    ttl = "" # never expires, even when the matcher is down for weeks
  }
}

# Dead letters stay here (7 days) for an operator to inspect and republish.
resource "google_pubsub_subscription" "dead_letter_hold" {
  project = var.project_id
  name    = "${var.dead_letter_topic}-hold"
  topic   = google_pubsub_topic.dead_letter.id
  labels  = var.labels

  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"
  retain_acked_messages      = true

  expiration_policy {
    ttl = ""
  }
}

# The service agent forwards undeliverable messages: it publishes to the dead-letter topic and
# acknowledges them on the source subscription.
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  project = var.project_id
  topic   = google_pubsub_topic.dead_letter.name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_service_agent
}

resource "google_pubsub_subscription_iam_member" "dead_letter_source_subscriber" {
  project      = var.project_id
  subscription = google_pubsub_subscription.commands_matcher.name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

# The deployables: keys are deployable names (known at plan time), values IAM members.
resource "google_pubsub_topic_iam_member" "commands_publishers" {
  for_each = var.commands_publishers

  project = var.project_id
  topic   = google_pubsub_topic.commands.name
  role    = "roles/pubsub.publisher"
  member  = each.value
}

resource "google_pubsub_topic_iam_member" "events_publishers" {
  for_each = var.events_publishers

  project = var.project_id
  topic   = google_pubsub_topic.events.name
  role    = "roles/pubsub.publisher"
  member  = each.value
}

resource "google_pubsub_subscription_iam_member" "commands_subscribers" {
  for_each = var.commands_subscribers

  project      = var.project_id
  subscription = google_pubsub_subscription.commands_matcher.name
  role         = "roles/pubsub.subscriber"
  member       = each.value
}

# The matcher dead-letters the commands it refuses (unsigned, forbidden, undecodable) itself.
resource "google_pubsub_topic_iam_member" "dead_letter_publishers" {
  for_each = var.dead_letter_publishers

  project = var.project_id
  topic   = google_pubsub_topic.dead_letter.name
  role    = "roles/pubsub.publisher"
  member  = each.value
}

# The admin function moves the held dead letters into the database for the operator's console
# (docs/decisions/0025): it pulls and acknowledges them there, nothing else.
resource "google_pubsub_subscription_iam_member" "dead_letter_readers" {
  for_each = var.dead_letter_readers

  project      = var.project_id
  subscription = google_pubsub_subscription.dead_letter_hold.name
  role         = "roles/pubsub.subscriber"
  member       = each.value
}
