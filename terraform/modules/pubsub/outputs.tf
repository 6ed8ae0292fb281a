output "commands_topic" {
  description = "The commands topic's name."
  value       = google_pubsub_topic.commands.name
}

output "events_topic" {
  description = "The events topic's name."
  value       = google_pubsub_topic.events.name
}

output "dead_letter_topic" {
  description = "The dead-letter topic's name."
  value       = google_pubsub_topic.dead_letter.name
}

output "commands_subscription" {
  description = "The matcher's subscription's name."
  value       = google_pubsub_subscription.commands_matcher.name
}

output "dead_letter_subscription" {
  description = "Where dead letters wait for an operator."
  value       = google_pubsub_subscription.dead_letter_hold.name
}
