# The exchange on Google Cloud: one environment. ARCHITECTURE.md has the shape; docs/deploy.md
# the steps from an empty project. The APIs are enabled by terraform/bootstrap (before this
# root's first plan, and before Cloud Build can run at all).

locals {
  members         = { for d in local.deployables : d => module.service_accounts.members[local.account_of[d]] }
  emails          = { for d in local.deployables : d => module.service_accounts.emails[local.account_of[d]] }
  sources_bucket  = "${var.project_id}-${local.prefix}-fn-sources"
  api_url         = module.api_entry.api_url
  firestore_where = var.firestore_location != "" ? var.firestore_location : var.region

  # Environment of each deployable, from the tables in locals.tf.
  common_env = {
    GOOGLE_CLOUD_PROJECT = var.project_id
  }
  api_env = {
    JWT_ISSUER             = local.api_url
    JWT_AUDIENCE           = var.jwt_audience
    API_CORS_ORIGINS       = join(",", var.cors_origins)
    API_TRUSTED_PROXY_HOPS = tostring(var.trusted_proxy_hops)
  }
  pubsub_env = {
    COMMANDS_TOPIC        = module.pubsub.commands_topic
    COMMANDS_SUBSCRIPTION = module.pubsub.commands_subscription
    EVENTS_TOPIC          = module.pubsub.events_topic
    DEAD_LETTER_TOPIC     = module.pubsub.dead_letter_topic
    MAX_DELIVERY_ATTEMPTS = tostring(var.commands_max_delivery_attempts)
  }
  postgres_env = {
    CLOUD_SQL_INSTANCE = module.database.connection_name
    PGUSER             = module.database.user
    PGDATABASE         = module.database.database
  }
  wallet_env = merge(
    {
      CHAIN_ID           = tostring(var.chain_id)
      HOT_WALLET_ADDRESS = var.hot_wallet_address
      OPERATOR_ETH_WEI   = var.operator_eth_wei
    },
    { for k, v in { GAS_WALLET_ADDRESS = var.gas_wallet_address } : k => v if v != "" },
    var.wallet_env,
  )

  # Secrets whose version is rolled out explicitly (docs/deploy.md: rotating the auth keys).
  pinned_versions = {
    auth_keys        = var.auth_keys_version
    auth_verify_keys = var.auth_verify_keys_version
  }
  env = {
    for d in local.deployables : d => merge(
      local.common_env,
      { for k, v in local.api_env : k => v if contains(local.api_users, d) },
      { for k, v in local.pubsub_env : k => v if contains(local.pubsub_users, d) },
      { for k, v in local.postgres_env : k => v if contains(local.postgres_users, d) },
      { for k, v in local.wallet_env : k => v if contains(local.wallet_users, d) },
      {
        for key, variable in local.secret_version_env :
        variable => "${module.secrets.names[key]}/versions/${lookup(local.pinned_versions, key, "latest")}"
        if contains(local.secret_readers[key], d)
      },
    )
  }
  secret_env = {
    for d in local.deployables : d => {
      for key, variable in local.secret_value_env :
      variable => module.secrets.ids[key]
      if contains(local.secret_readers[key], d)
    }
  }
}

module "network" {
  source = "../../modules/network"

  project_id = var.project_id
  region     = var.region
  name       = local.prefix
}

module "service_accounts" {
  source = "../../modules/service_accounts"

  project_id = var.project_id
  name       = local.prefix
  accounts = merge(
    { for f, spec in local.functions : "fn-${f}" => "Cloud Function ${f}: ${spec.description}" },
    {
      matcher   = "The matcher (Cloud Run, one instance)."
      ws        = "The WebSocket service (Cloud Run)."
      migrate   = "The database migration job (Cloud Run job)."
      scheduler = "Cloud Scheduler's identity: invokes the scheduled functions (OIDC)."
      fn-build  = "Cloud Build's identity when it builds the functions' images."
    },
  )

  # Roles that exist only at project level: Firestore data access and the Cloud SQL connector.
  project_roles = merge(
    {
      for d in local.deployables : local.account_of[d] => compact([
        contains(local.firestore_users, d) ? "roles/datastore.user" : "",
        contains(local.firestore_readers, d) ? "roles/datastore.viewer" : "",
        contains(local.postgres_users, d) ? "roles/cloudsql.client" : "",
      ])
    },
    { fn-build = ["roles/logging.logWriter"] },
  )

  # The functions' build account reads their sources and pushes their images, nothing else.
  conditional_roles = {
    build-sources = {
      account    = "fn-build"
      role       = "roles/storage.objectViewer"
      title      = "function sources only"
      expression = "resource.name.startsWith(\"projects/_/buckets/${local.sources_bucket}\") || resource.name.startsWith(\"projects/_/buckets/gcf-v2-sources-\")"
    }
    build-images = {
      account    = "fn-build"
      role       = "roles/artifactregistry.writer"
      title      = "function images only"
      expression = "resource.name.startsWith(\"projects/${var.project_id}/locations/${var.region}/repositories/gcf-artifacts\")"
    }
  }
}

module "pubsub" {
  source = "../../modules/pubsub"

  project_id             = var.project_id
  labels                 = local.labels
  max_delivery_attempts  = var.commands_max_delivery_attempts
  commands_exactly_once  = var.commands_exactly_once
  commands_publishers    = { for d in local.commands_publishers : d => local.members[d] }
  commands_subscribers   = { for d in local.commands_consumers : d => local.members[d] }
  events_publishers      = { for d in local.events_publishers : d => local.members[d] }
  dead_letter_publishers = { for d in local.commands_consumers : d => local.members[d] }
  dead_letter_readers    = { for d in local.dead_letter_readers : d => local.members[d] }
}

module "database" {
  source = "../../modules/database"

  project_id          = var.project_id
  region              = var.region
  name                = local.prefix
  network_id          = module.network.network_id
  labels              = local.labels
  tier                = var.sql_tier
  availability_type   = var.sql_availability_type
  max_connections     = var.sql_max_connections
  deletion_protection = var.deletion_protection

  depends_on = [module.network] # the private services peering must exist first
}

module "redis" {
  source = "../../modules/redis"

  project_id        = var.project_id
  region            = var.region
  name              = local.prefix
  network_id        = module.network.network_id
  reserved_ip_range = module.network.private_services_range
  labels            = local.labels
  tier              = var.redis_tier
  memory_size_gb    = var.redis_memory_gb

  depends_on = [module.network]
}

module "firestore" {
  source = "../../modules/firestore"

  project_id          = var.project_id
  location            = local.firestore_where
  deletion_protection = var.deletion_protection
}

module "secrets" {
  source = "../../modules/secrets"

  project_id = var.project_id
  name       = local.prefix
  labels     = local.labels
  secrets    = local.secrets
  generated  = ["db_password", "redis_url"]
  values = {
    db_password = module.database.password
    redis_url   = module.redis.url
  }
  accessors = local.secret_readers
  members   = local.members
}

module "functions" {
  source = "../../modules/functions"

  project_id                = var.project_id
  region                    = var.region
  name                      = local.prefix
  labels                    = local.labels
  manifest_path             = local.manifest
  vpc_connector             = module.network.connector_id
  build_service_account     = module.service_accounts.ids["fn-build"]
  scheduler_service_account = module.service_accounts.emails["scheduler"]
  deletion_protection       = var.deletion_protection

  functions = {
    for f, spec in local.functions : f => merge(spec, {
      service_account = local.emails[f]
      env             = local.env[f]
      secret_env      = local.secret_env[f]
    })
  }

  # Secret access and project roles before the first revision starts with them.
  depends_on = [module.secrets, module.service_accounts, module.firestore]
}

module "matcher" {
  source = "../../modules/run_service"

  project_id      = var.project_id
  region          = var.region
  name            = "${local.prefix}-matcher"
  description     = "The matcher: the one writer of balances, orders and trades (exactly one instance)."
  labels          = local.labels
  image           = local.images["matcher"]
  service_account = local.emails["matcher"]
  ingress         = "INGRESS_TRAFFIC_INTERNAL_ONLY" # probes only; nobody calls it
  invokers        = {}

  # Exactly one instance, always on, CPU always allocated: it consumes Pub/Sub in the
  # background, not in requests. (During a deploy the new revision's instance starts before
  # the old one stops; the Postgres advisory lock and the fencing epoch keep one applier.)
  min_instances        = 1
  max_instances        = 1
  cpu_always_allocated = true
  cpu                  = var.matcher_cpu
  memory               = var.matcher_memory
  concurrency          = 10
  timeout_seconds      = 60
  health_path          = "/healthz"

  network             = module.network.network_id
  subnetwork          = module.network.subnet_id
  env                 = merge(local.env["matcher"], var.matcher_env)
  secret_env          = local.secret_env["matcher"]
  deletion_protection = var.deletion_protection

  depends_on = [module.secrets, module.service_accounts, module.pubsub]
}

module "ws" {
  source = "../../modules/run_service"

  project_id      = var.project_id
  region          = var.region
  name            = "${local.prefix}-ws"
  description     = "The WebSocket feed: market data and private updates from Redis."
  labels          = local.labels
  image           = local.images["ws"]
  service_account = local.emails["ws"]
  ingress         = "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER" # only through the load balancer
  invokers        = { public = "allUsers" }                  # the service authenticates clients itself

  # Scales out; a WebSocket connection is one long request (up to an hour, then the client
  # reconnects); session affinity keeps a client's reconnects on its instance while it lives.
  min_instances        = var.ws_min_instances
  max_instances        = var.ws_max_instances
  cpu_always_allocated = false
  concurrency          = 1000
  timeout_seconds      = 3600
  session_affinity     = true
  health_path          = "/healthz"

  network             = module.network.network_id
  subnetwork          = module.network.subnet_id
  env                 = local.env["ws"]
  secret_env          = local.secret_env["ws"]
  deletion_protection = var.deletion_protection

  depends_on = [module.secrets, module.service_accounts]
}

module "migrate" {
  source = "../../modules/run_job"

  project_id          = var.project_id
  region              = var.region
  name                = "${local.prefix}-migrate"
  labels              = local.labels
  image               = local.images["matcher"] # carries migrations/
  command             = ["python", "-m", "migrations.migrate"]
  service_account     = local.emails["migrate"]
  network             = module.network.network_id
  subnetwork          = module.network.subnet_id
  env                 = local.env["migrate"]
  secret_env          = local.secret_env["migrate"]
  deletion_protection = var.deletion_protection

  depends_on = [module.secrets, module.service_accounts]
}

module "api_entry" {
  source = "../../modules/api_entry"

  project_id = var.project_id
  region     = var.region
  name       = local.prefix
  labels     = local.labels
  domain     = var.api_domain

  function_backends = {
    for f, spec in local.functions : f => "${local.prefix}-${f}" if spec.trigger == "http"
  }
  run_backends       = { ws = "${local.prefix}-ws" }
  routes             = local.routes
  default_backend    = "docs"
  web_backend_bucket = module.web.backend_bucket
}

# The web page, served by the same load balancer (docs/web.md).
module "web" {
  source = "../../modules/web"

  project_id = var.project_id
  name       = local.prefix
  location   = var.region
  labels     = local.labels
}

# Log-based metrics, alert policies and the vital-signs dashboard (docs/operations.md).
module "monitoring" {
  source = "../../modules/monitoring"

  project_id               = var.project_id
  name                     = local.prefix
  notification_channels    = var.notification_channels
  matcher_service          = module.matcher.name
  function_services        = values(module.functions.names)
  commands_subscription    = module.pubsub.commands_subscription
  dead_letter_subscription = module.pubsub.dead_letter_subscription
  sql_instance             = module.database.instance_name
  redis_instance_id        = module.redis.instance_id
}
