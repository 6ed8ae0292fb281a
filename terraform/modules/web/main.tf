# The web page (web/, docs/web.md) from a Cloud Storage bucket behind the API's own load
# balancer (modules/api_entry routes /, /index.html and /assets/ here), through Cloud CDN: one
# origin for the page, the API and the live feed, so no CORS and a CSP of 'self'.
#
# Cache headers come with the objects (cloudbuild.yaml's upload-web step sets them): the files
# under assets/ are named by their content hash and cached for good (immutable), index.html is
# revalidated on every load (no-cache) so a new build shows at once. The CDN follows them
# (USE_ORIGIN_HEADERS). The page's security headers are added by the load balancer.

terraform {
  required_version = ">= 1.0"
  required_providers {
    google = {
      source = "hashicorp/google"
    }
  }
}

locals {
  content_security_policy = join("; ", [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
  ])
}

resource "google_storage_bucket" "web" {
  # checkov:skip=CKV_GCP_114:the bucket holds only the public web page's built files, read by anyone
  project                     = var.project_id
  name                        = "${var.project_id}-${var.name}-web"
  location                    = var.location
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "inherited"
  force_destroy               = true
  labels                      = var.labels

  versioning {
    enabled = true
  }

  # Old builds' hashed files are kept a while for pages still open, then removed.
  lifecycle_rule {
    condition {
      num_newer_versions = 3
    }
    action {
      type = "Delete"
    }
  }
}

# The page is public: anyone may read its files (the load balancer's CDN reads them so).
resource "google_storage_bucket_iam_member" "public_read" {
  # checkov:skip=CKV_GCP_28:the bucket holds only the public web page's built files
  bucket = google_storage_bucket.web.name
  role   = "roles/storage.objectViewer"
  member = "allUsers"
}

resource "google_compute_backend_bucket" "web" {
  project          = var.project_id
  name             = "${var.name}-web"
  description      = "The web page's built files (web/), through Cloud CDN."
  bucket_name      = google_storage_bucket.web.name
  enable_cdn       = true
  compression_mode = "AUTOMATIC"

  cdn_policy {
    cache_mode         = "USE_ORIGIN_HEADERS"
    request_coalescing = true
    serve_while_stale  = 86400
  }

  custom_response_headers = [
    "Content-Security-Policy: ${local.content_security_policy}",
    "X-Content-Type-Options: nosniff",
    "Referrer-Policy: no-referrer",
    "X-Frame-Options: DENY",
    "Strict-Transport-Security: max-age=31536000",
  ]
}
