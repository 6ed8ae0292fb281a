# The one public HTTPS entry: a global external Application Load Balancer whose URL map routes
# each path (and, where the API needs it, each method) to a serverless backend: the HTTP Cloud
# Functions and the ws service on Cloud Run. It does for the cloud what infra/gateway.py does
# locally (tests/deploy/test_terraform.py keeps the two route tables in step).
#
# Why a load balancer rather than API Gateway: API Gateway needs a Swagger 2.0 document (ours is
# OpenAPI 3.1), it sends its own OIDC token to the backend and moves the caller's Authorization
# header to X-Forwarded-Authorization (the API's bearer tokens would not arrive where
# api/auth.py reads them), and it cannot carry WebSockets. The load balancer passes requests
# through unchanged, routes by method and path, carries WebSockets, and gives Google-managed
# TLS certificates, HTTP-to-HTTPS redirection, request logs and optionally Cloud Armor.
#
# A path prefix matches itself and everything below it (/v1/orders and /v1/orders/42, never
# /v1/orders2), as in infra/gateway.py: each route becomes two match rules, a full-path match
# and a prefix match on "prefix/". A route with a method matches only that method (the
# :method pseudo-header), and the CORS preflight (OPTIONS) asking for it, ahead of the plain
# route of the same path. Rules are tried in var.routes order. Anything else goes to
# var.default_backend, which answers 404 in the API's error format.
#
# With var.web_backend_bucket, the web page is served here too (modules/web): "/",
# "/index.html" and everything under "/assets/" go to its bucket, after the API's routes.

terraform {
  required_version = ">= 1.0"
  required_providers {
    google = {
      source = "hashicorp/google"
    }
  }
}

locals {
  # Without a domain of its own, the API is served as A-B-C-D.sslip.io (a public DNS name that
  # resolves to the address in it), so the managed certificate can be issued with no DNS setup.
  domain = var.domain != "" ? var.domain : "${replace(google_compute_global_address.api.address, ".", "-")}.sslip.io"

  backends = merge(
    { for k, fn in var.function_backends : k => { kind = "function", target = fn } },
    { for k, svc in var.run_backends : k => { kind = "run", target = svc } },
  )

  rules = [
    for i, r in var.routes : {
      priority = i + 1
      backend  = r.backend
      matches = concat(
        [
          { full = r.prefix, prefix = "", method = r.method, preflight = false },
          { full = "", prefix = "${r.prefix}/", method = r.method, preflight = false },
        ],
        [
          for m in [
            { full = r.prefix, prefix = "", method = r.method, preflight = true },
            { full = "", prefix = "${r.prefix}/", method = r.method, preflight = true },
          ] : m if r.method != ""
        ],
      )
    }
  ]
}

resource "google_compute_global_address" "api" {
  project = var.project_id
  name    = "${var.name}-api"
}

resource "google_compute_managed_ssl_certificate" "api" {
  project = var.project_id
  name    = "${var.name}-api-${substr(sha256(local.domain), 0, 8)}"

  managed {
    domains = [local.domain]
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "google_compute_ssl_policy" "modern" {
  project         = var.project_id
  name            = "${var.name}-tls12-modern"
  profile         = "MODERN"
  min_tls_version = "TLS_1_2"
}

resource "google_compute_region_network_endpoint_group" "backend" {
  for_each = local.backends

  project               = var.project_id
  region                = var.region
  name                  = "${var.name}-${each.key}"
  network_endpoint_type = "SERVERLESS"

  dynamic "cloud_function" {
    for_each = each.value.kind == "function" ? [each.value.target] : []
    content {
      function = cloud_function.value
    }
  }

  dynamic "cloud_run" {
    for_each = each.value.kind == "run" ? [each.value.target] : []
    content {
      service = cloud_run.value
    }
  }
}

resource "google_compute_backend_service" "backend" {
  for_each = local.backends

  project               = var.project_id
  name                  = "${var.name}-${each.key}"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  protocol              = "HTTPS"
  security_policy       = var.security_policy == "" ? null : var.security_policy

  backend {
    group = google_compute_region_network_endpoint_group.backend[each.key].id
  }

  log_config {
    enable      = true
    sample_rate = var.log_sample_rate
  }
}

resource "google_compute_url_map" "api" {
  project         = var.project_id
  name            = "${var.name}-api"
  description     = "The exchange's API and WebSocket routes (infra/gateway.py in the cloud)."
  default_service = google_compute_backend_service.backend[var.default_backend].id

  host_rule {
    hosts        = ["*"]
    path_matcher = "api"
  }

  path_matcher {
    name            = "api"
    default_service = google_compute_backend_service.backend[var.default_backend].id

    dynamic "route_rules" {
      for_each = local.rules
      content {
        priority = route_rules.value.priority
        service  = google_compute_backend_service.backend[route_rules.value.backend].id

        dynamic "match_rules" {
          for_each = route_rules.value.matches
          content {
            full_path_match = match_rules.value.full != "" ? match_rules.value.full : null
            prefix_match    = match_rules.value.prefix != "" ? match_rules.value.prefix : null

            dynamic "header_matches" {
              for_each = match_rules.value.method == "" ? [] : [match_rules.value.preflight ? "OPTIONS" : match_rules.value.method]
              content {
                header_name = ":method"
                exact_match = header_matches.value
              }
            }

            dynamic "header_matches" {
              for_each = match_rules.value.preflight ? [match_rules.value.method] : []
              content {
                header_name = "access-control-request-method"
                exact_match = header_matches.value
              }
            }
          }
        }
      }
    }

    dynamic "route_rules" {
      for_each = var.web_backend_bucket == "" ? [] : [var.web_backend_bucket]
      content {
        priority = length(local.rules) + 1
        service  = route_rules.value

        match_rules {
          full_path_match = "/"
        }
        match_rules {
          full_path_match = "/index.html"
        }
        match_rules {
          prefix_match = "/assets/"
        }
      }
    }
  }
}

resource "google_compute_target_https_proxy" "api" {
  project          = var.project_id
  name             = "${var.name}-api"
  url_map          = google_compute_url_map.api.id
  ssl_certificates = [google_compute_managed_ssl_certificate.api.id]
  ssl_policy       = google_compute_ssl_policy.modern.id
}

resource "google_compute_global_forwarding_rule" "https" {
  project               = var.project_id
  name                  = "${var.name}-api-https"
  target                = google_compute_target_https_proxy.api.id
  ip_address            = google_compute_global_address.api.id
  port_range            = "443"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  labels                = var.labels
}

# Plain HTTP only redirects to HTTPS.
resource "google_compute_url_map" "redirect" {
  project = var.project_id
  name    = "${var.name}-api-redirect"

  default_url_redirect {
    https_redirect         = true
    redirect_response_code = "MOVED_PERMANENTLY_DEFAULT"
    strip_query            = false
  }
}

resource "google_compute_target_http_proxy" "redirect" {
  project = var.project_id
  name    = "${var.name}-api-redirect"
  url_map = google_compute_url_map.redirect.id
}

resource "google_compute_global_forwarding_rule" "http" {
  project               = var.project_id
  name                  = "${var.name}-api-http"
  target                = google_compute_target_http_proxy.redirect.id
  ip_address            = google_compute_global_address.api.id
  port_range            = "80"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  labels                = var.labels
}
