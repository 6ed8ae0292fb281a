variable "project_id" {
  description = "The Google Cloud project to deploy into."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "A project id has 6 to 30 lowercase letters, digits and dashes."
  }
}

variable "region" {
  description = "The region of every regional resource (functions, Cloud Run, Cloud SQL, Redis)."
  type        = string
  default     = "us-central1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]$", var.region))
    error_message = "A region looks like us-central1 or europe-west1."
  }
}

variable "environment" {
  description = "The environment's short name (prod, staging, ...), part of every resource name."
  type        = string
  default     = "prod"

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{1,5}$", var.environment))
    error_message = "The environment is 2 to 6 lowercase letters and digits."
  }
}

variable "name" {
  description = "The product's short name, the first part of every resource name."
  type        = string
  default     = "exchange"

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{2,9}$", var.name))
    error_message = "The name is 3 to 10 lowercase letters and digits (service account ids are short)."
  }
}

variable "image_tag" {
  description = "Tag of the matcher and ws images to deploy (Cloud Build: the commit SHA)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.image_tag)) && var.image_tag != "latest"
    error_message = "The image tag must be a valid Docker tag other than latest (deploy what was built)."
  }
}

variable "artifact_repository" {
  description = "The Artifact Registry Docker repository the images are pushed to (made by terraform/bootstrap)."
  type        = string
  default     = "exchange"
}

variable "functions_manifest" {
  description = "manifest.json of `python -m infra.stage_functions`; empty: build/functions/manifest.json at the repository root."
  type        = string
  default     = ""
}

variable "deletion_protection" {
  description = "Protect the database, Firestore, the services and the sources bucket from deletion."
  type        = bool
  default     = true
}

variable "api_domain" {
  description = "The API's host name (point its A record at the output api_ip_address); empty: IP.sslip.io."
  type        = string
  default     = ""

  validation {
    condition     = var.api_domain == "" || can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,}$", var.api_domain))
    error_message = "The api_domain must be a lowercase host name such as api.example.com, or empty."
  }
}

variable "cors_origins" {
  description = "Browser origins allowed to call the API (API_CORS_ORIGINS)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for o in var.cors_origins : o == "*" || can(regex("^https?://[^/]+$", o))])
    error_message = "An origin is scheme://host[:port] (no path), or *."
  }
}

variable "jwt_audience" {
  description = "The aud claim of the API's access tokens (JWT_AUDIENCE); the issuer is the API's URL."
  type        = string
  default     = "exchange-api"
}

variable "trusted_proxy_hops" {
  description = "Proxies that append to X-Forwarded-For in front of the functions (the load balancer appends the client and its own address: 2)."
  type        = number
  default     = 2

  validation {
    condition     = var.trusted_proxy_hops >= 0 && var.trusted_proxy_hops <= 5
    error_message = "Between 0 and 5."
  }
}

variable "auth_keys_version" {
  description = "Version of the auth-keys secret the API reads: latest, or a number to roll out a rotation explicitly."
  type        = string
  default     = "latest"

  validation {
    condition     = can(regex("^(latest|[1-9][0-9]*)$", var.auth_keys_version))
    error_message = "The version is latest or a version number."
  }
}

variable "auth_verify_keys_version" {
  description = "Version of the auth-verify-keys secret the verifiers read: latest, or a number (publish a new public key there before auth signs with it)."
  type        = string
  default     = "latest"

  validation {
    condition     = can(regex("^(latest|[1-9][0-9]*)$", var.auth_verify_keys_version))
    error_message = "The version is latest or a version number."
  }
}

variable "http_max_instances" {
  description = "Most instances of each HTTP function (each Postgres user holds one connection per instance)."
  type        = number
  default     = 5

  validation {
    condition     = var.http_max_instances >= 1 && var.http_max_instances <= 100
    error_message = "Between 1 and 100."
  }
}

variable "schedules" {
  description = "Cron schedule (UTC) of each scheduled function; every minute is the finest Cloud Scheduler allows."
  type        = map(string)
  default = {
    watcher  = "* * * * *"
    sweep    = "*/10 * * * *"
    sender   = "* * * * *"
    audits   = "*/5 * * * *"
    reserves = "*/5 * * * *"
  }

  validation {
    condition     = alltrue([for s in values(var.schedules) : length(split(" ", s)) == 5])
    error_message = "A schedule is a five-field cron expression."
  }

  validation {
    condition     = length(setsubtract(toset(["watcher", "sweep", "sender", "audits", "reserves"]), toset(keys(var.schedules)))) == 0
    error_message = "The watcher, sweep, sender, audits and reserves each need a schedule."
  }
}

variable "chain_id" {
  description = "The chain's id (CHAIN_ID): 1 for Ethereum mainnet, 11155111 for Sepolia."
  type        = number
  default     = 1

  validation {
    condition     = var.chain_id > 0 && floor(var.chain_id) == var.chain_id
    error_message = "The chain id is a positive integer."
  }
}

variable "hot_wallet_address" {
  description = "The hot wallet's address (HOT_WALLET_ADDRESS): sweeps go there, withdrawals leave from it."
  type        = string

  validation {
    condition     = can(regex("^0x[0-9a-fA-F]{40}$", var.hot_wallet_address)) && !can(regex("^0x0{40}$", var.hot_wallet_address))
    error_message = "An address is 0x and 40 hex digits (and not the zero address: sweeps go there)."
  }
}

variable "gas_wallet_address" {
  description = "The gas wallet's address (GAS_WALLET_ADDRESS; its top-ups are not deposits); empty if none."
  type        = string
  default     = ""

  validation {
    condition     = var.gas_wallet_address == "" || can(regex("^0x[0-9a-fA-F]{40}$", var.gas_wallet_address))
    error_message = "An address is 0x and 40 hex digits, or empty."
  }
}

variable "operator_eth_wei" {
  description = "The ETH (in wei) the operator put into the hot wallet themselves, for withdrawals' gas (OPERATOR_ETH_WEI): the on-chain audit counts it as held but owed to nobody. Raise it with each funding."
  type        = string
  default     = "0"

  validation {
    condition     = can(regex("^[0-9]+$", var.operator_eth_wei))
    error_message = "A whole number of wei, as a string (wei overflow a number's exact range)."
  }
}

variable "wallet_env" {
  description = "More environment of the wallet functions (DEPOSIT_CONFIRMATIONS, MAX_FEE_GWEI, ...; docs/wallet.md)."
  type        = map(string)
  default     = {}
}

variable "matcher_env" {
  description = "More environment of the matcher (BATCH_MAX, SNAPSHOT_EVERY, ...; shared/config.py)."
  type        = map(string)
  default     = {}
}

variable "matcher_cpu" {
  description = "vCPUs of the matcher's one instance."
  type        = string
  default     = "1"
}

variable "matcher_memory" {
  description = "Memory of the matcher's one instance (the books and accounts live in it)."
  type        = string
  default     = "1Gi"
}

variable "ws_min_instances" {
  description = "ws service instances kept running (0 scales to zero when nobody is connected)."
  type        = number
  default     = 0
}

variable "ws_max_instances" {
  description = "Most ws service instances."
  type        = number
  default     = 5

  validation {
    condition     = var.ws_max_instances >= 1 && var.ws_max_instances <= 100
    error_message = "Between 1 and 100."
  }
}

variable "commands_max_delivery_attempts" {
  description = "Deliveries of a command before it goes to the dead-letter topic."
  type        = number
  default     = 10

  validation {
    condition     = var.commands_max_delivery_attempts >= 5 && var.commands_max_delivery_attempts <= 100
    error_message = "Pub/Sub allows 5 to 100."
  }
}

variable "commands_exactly_once" {
  description = "Exactly-once delivery on the matcher's subscription (off: the matcher deduplicates by command id)."
  type        = bool
  default     = false
}

variable "sql_tier" {
  description = "Cloud SQL machine tier (db-f1-micro is the smallest; db-custom-1-3840 or more for production)."
  type        = string
  default     = "db-f1-micro"
}

variable "sql_availability_type" {
  description = "ZONAL or REGIONAL (high availability)."
  type        = string
  default     = "ZONAL"
}

variable "sql_max_connections" {
  description = "Postgres max_connections."
  type        = number
  default     = 50
}

variable "redis_tier" {
  description = "Memorystore tier: BASIC or STANDARD_HA."
  type        = string
  default     = "BASIC"
}

variable "redis_memory_gb" {
  description = "Memorystore memory in GB."
  type        = number
  default     = 1
}

variable "firestore_location" {
  description = "Firestore's location (a region or nam5/eur3); empty: the region. It cannot change later."
  type        = string
  default     = ""
}

variable "labels" {
  description = "More labels on every resource that takes labels."
  type        = map(string)
  default     = {}
}

variable "notification_channels" {
  description = "Cloud Monitoring notification channel ids (projects/P/notificationChannels/N) the alerts go to (made by hand or elsewhere: e-mail, PagerDuty, ...)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.notification_channels : can(regex("^projects/[^/]+/notificationChannels/[0-9]+$", c))])
    error_message = "A notification channel is projects/PROJECT/notificationChannels/NUMBER."
  }
}
