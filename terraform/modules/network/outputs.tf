output "network_id" {
  description = "The VPC's id (projects/P/global/networks/N)."
  value       = google_compute_network.vpc.id
}

output "network_name" {
  description = "The VPC's name."
  value       = google_compute_network.vpc.name
}

output "subnet_id" {
  description = "The subnet's id, for Cloud Run's direct VPC egress."
  value       = google_compute_subnetwork.main.id
}

output "connector_id" {
  description = "The Serverless VPC Access connector, for Cloud Functions."
  value       = google_vpc_access_connector.functions.id
}

output "private_services_range" {
  description = "The name of the range allocated to private services access."
  value       = google_compute_global_address.private_services.name
}

output "private_services_connection" {
  description = "The peering; resources that need a private address depend on it."
  value       = google_service_networking_connection.private_services.id
}
