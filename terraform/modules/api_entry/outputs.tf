output "ip_address" {
  description = "The entry's public address (the A record of the domain)."
  value       = google_compute_global_address.api.address
}

output "domain" {
  description = "The host name the certificate is for."
  value       = local.domain
}

output "api_url" {
  description = "The API's base URL."
  value       = "https://${local.domain}"
}

output "ws_url" {
  description = "The WebSocket URL."
  value       = "wss://${local.domain}/v1/ws"
}

output "certificate" {
  description = "The managed certificate (ACTIVE once DNS points at the address; up to an hour)."
  value       = google_compute_managed_ssl_certificate.api.name
}
