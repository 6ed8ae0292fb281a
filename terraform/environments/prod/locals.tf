# What each deployable is and needs, in one place. Everything else (service accounts, IAM,
# environment, secrets) is derived from these tables; tests/deploy/test_terraform.py asserts
# the security-relevant facts about them.

locals {
  prefix = "${var.name}-${var.environment}"
  labels = merge(var.labels, {
    app         = var.name
    environment = var.environment
    managed-by  = "terraform"
  })

  manifest = var.functions_manifest != "" ? var.functions_manifest : "${path.root}/../../../build/functions/manifest.json"
  registry = "${var.region}-docker.pkg.dev/${var.project_id}/${var.artifact_repository}"
  images = {
    matcher = "${local.registry}/matcher:${var.image_tag}"
    ws      = "${local.registry}/ws:${var.image_tag}"
  }

  # The Cloud Functions: functions/NAME/main.py, entry point NAME. HTTP ones sit behind the
  # load balancer and scale out; scheduled ones are invoked by Cloud Scheduler only, one run
  # at a time (max 1 / concurrency 1; each also takes a Postgres advisory lock). Each row says
  # what differs from its trigger's defaults.
  function_defaults = {
    http = {
      schedule        = ""
      memory          = "512Mi"
      cpu             = "1"
      timeout_seconds = 60
      min_instances   = 0
      max_instances   = var.http_max_instances
      concurrency     = 20
    }
    schedule = {
      memory          = "512Mi"
      cpu             = "1"
      timeout_seconds = 300
      min_instances   = 0
      max_instances   = 1
      concurrency     = 1
    }
  }
  function_specs = {
    auth = {
      trigger     = "http"
      description = "Accounts, sessions and API keys: /v1/auth, /v1/api-keys"
      memory      = "1Gi" # argon2id hashes take 64 MiB each
      concurrency = 8
    }
    orders = {
      trigger     = "http"
      description = "Place and cancel orders, the fate of a command: /v1/orders, /v1/commands"
    }
    binance = {
      trigger     = "http"
      description = "The Binance-compatible dialect: /api/v3 (docs/binance-api.md)"
    }
    queries = {
      trigger     = "http"
      description = "Market data and the caller's history: /v1/markets, /v1/balances, GET /v1/orders, ..."
    }
    admin = {
      trigger         = "http"
      description     = "Assets, markets, credits, users, the audit: /v1/admin"
      timeout_seconds = 120
      max_instances   = 2
      concurrency     = 4
    }
    docs = {
      trigger         = "http"
      description     = "The OpenAPI document: /v1/openapi.json (and the 404 of unknown paths)"
      memory          = "256Mi"
      cpu             = "0.167"
      timeout_seconds = 30
      max_instances   = 2
      concurrency     = 1
    }
    wallet = {
      trigger     = "http"
      description = "Deposit addresses, deposits and withdrawals: /v1/deposits, /v1/withdrawals"
    }
    watcher = {
      trigger     = "schedule"
      schedule    = var.schedules["watcher"]
      description = "the deposit watcher"
    }
    sweep = {
      trigger     = "schedule"
      schedule    = var.schedules["sweep"]
      description = "the sweep of deposit addresses to the hot wallet"
    }
    sender = {
      trigger     = "schedule"
      schedule    = var.schedules["sender"]
      description = "the withdrawal sender"
    }
    audits = {
      trigger     = "schedule"
      schedule    = var.schedules["audits"]
      description = "the books' audit, stored, a difference alerted (docs/operations.md)"
    }
    reserves = {
      trigger     = "schedule"
      schedule    = var.schedules["reserves"]
      description = "the on-chain audit of the reserves and the hot wallet's check, stored, alerted (docs/operations.md)"
    }
  }
  functions = {
    for f, spec in local.function_specs : f => merge(local.function_defaults[spec.trigger], spec)
  }

  # Every deployable (the functions, the two Cloud Run services, the migration job) and its
  # service account's short name.
  deployables = concat(keys(local.functions), ["matcher", "ws", "migrate"])
  account_of  = { for d in local.deployables : d => contains(keys(local.functions), d) ? "fn-${d}" : d }

  # Who uses what. Each list grants exactly that access and the environment that goes with it.
  # Writers: accounts and sessions (auth), listings and roles (admin), deposit and withdrawal
  # addresses (wallet); the second factor's used codes (auth, wallet, admin). The others only
  # read: API keys and session state (orders, binance, queries, ws), deposit addresses (watcher,
  # sweep, reserves), the assets' chain details (the durable source of contracts and decimals
  # of the sender and the on-chain audit).
  firestore_users     = ["auth", "admin", "wallet"]
  firestore_readers   = ["ws", "orders", "binance", "queries", "watcher", "sweep", "sender", "reserves"]
  postgres_users      = ["matcher", "migrate", "orders", "binance", "queries", "admin", "wallet", "watcher", "sweep", "sender", "audits", "reserves"]
  redis_users         = ["matcher", "ws", "auth", "orders", "binance", "queries", "admin", "wallet", "watcher", "sweep", "sender"]
  api_users           = ["auth", "orders", "binance", "queries", "admin", "docs", "wallet", "ws"]
  wallet_users        = ["wallet", "watcher", "sweep", "sender", "reserves"]
  commands_publishers = ["orders", "binance", "admin", "wallet", "watcher", "sender"] # each signs with its own key
  commands_consumers  = ["matcher"]
  events_publishers   = ["matcher"]
  dead_letter_readers = ["admin"] # the console's dead letters (re-driven through commands_publishers)
  pubsub_users        = distinct(concat(local.commands_publishers, local.commands_consumers, local.events_publishers))

  # Secret Manager: who may read which secret. Nothing else gets a binding.
  # Only auth can sign access tokens (auth_keys holds the private JWT keys); the verifiers read
  # auth_verify_keys: the public JWT keys and the API-key masters (python -m api.auth public).
  # Each command producer reads its own signing key; the matcher the producers' public keys.
  secret_readers = {
    auth_keys           = ["auth"]
    auth_verify_keys    = ["orders", "binance", "queries", "admin", "wallet", "ws"]
    command_key_orders  = ["orders"]
    command_key_binance = ["binance"]
    command_key_wallet  = ["wallet"]
    command_key_watcher = ["watcher"]
    command_key_sender  = ["sender"]
    command_key_admin   = ["admin"]
    command_public_keys = ["matcher"]
    cursor_key          = ["queries", "wallet"]
    wallet_mnemonic     = ["wallet", "sweep"]
    hot_wallet_key      = ["sender"]
    gas_wallet_key      = ["sweep"]
    eth_rpc_url         = local.wallet_users
    db_password         = local.postgres_users
    redis_url           = local.redis_users
  }
  secrets = {
    auth_keys           = "The API's JWT signing keys and API-key masters (python -m api.auth new): the auth function's."
    auth_verify_keys    = "The same with the JWT keys' public halves only (python -m api.auth public): the verifiers'."
    command_key_orders  = "The orders function's command-signing key (python -m shared.producers new orders)."
    command_key_binance = "The Binance dialect's command-signing key (python -m shared.producers new binance)."
    command_key_wallet  = "The wallet function's command-signing key (python -m shared.producers new wallet)."
    command_key_watcher = "The watcher's command-signing key (python -m shared.producers new watcher)."
    command_key_sender  = "The withdrawal sender's command-signing key (python -m shared.producers new sender)."
    command_key_admin   = "The admin function's command-signing key (python -m shared.producers new admin)."
    command_public_keys = "Every producer's public key, for the matcher (python -m shared.producers public ...)."
    cursor_key          = "The key that signs page cursors (32+ random characters)."
    wallet_mnemonic     = "The BIP-39 mnemonic of the deposit addresses."
    hot_wallet_key      = "The hot wallet's private key (pays withdrawals)."
    gas_wallet_key      = "The gas wallet's private key (tops deposit addresses up for token sweeps)."
    eth_rpc_url         = "The Ethereum JSON-RPC URL (ETH_RPC_URL; often carries the provider's API key)."
    db_password         = "The application's Postgres password (written by Terraform)."
    redis_url           = "REDIS_URL with Memorystore's AUTH string (written by Terraform)."
  }
  # Secrets the code reads itself by version name (VARIABLE_SECRET=projects/P/secrets/S/versions/V).
  secret_version_env = {
    auth_keys           = "AUTH_KEYS_SECRET"
    auth_verify_keys    = "AUTH_KEYS_SECRET"
    command_key_orders  = "COMMAND_KEYS_SECRET"
    command_key_binance = "COMMAND_KEYS_SECRET"
    command_key_wallet  = "COMMAND_KEYS_SECRET"
    command_key_watcher = "COMMAND_KEYS_SECRET"
    command_key_sender  = "COMMAND_KEYS_SECRET"
    command_key_admin   = "COMMAND_KEYS_SECRET"
    command_public_keys = "COMMAND_KEYS_SECRET"
    cursor_key          = "CURSOR_KEY_SECRET"
    wallet_mnemonic     = "WALLET_MNEMONIC_SECRET"
    hot_wallet_key      = "HOT_WALLET_KEY_SECRET"
    gas_wallet_key      = "GAS_WALLET_KEY_SECRET"
  }
  # Secrets the platform injects as plain environment variables.
  secret_value_env = {
    db_password = "PGPASSWORD"
    redis_url   = "REDIS_URL"
    eth_rpc_url = "ETH_RPC_URL"
  }

  # The load balancer's routes, in precedence order (a method-specific route before the plain
  # one of its path): generated from the functions' route declarations, as infra/gateway.py's
  # ROUTES are, plus the WebSocket's (python -m infra.api_spec --write; tests keep it current).
  routes = jsondecode(file("${path.module}/routes.json"))
}
