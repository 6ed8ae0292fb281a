"""terraform/ parses (python-hcl2) and keeps the properties the deployment promises: the
command bus's ordering and dead-lettering, one matcher with CPU always on, private SQL and
Redis, secrets readable only by the deployables that need them, a job for every scheduled
function, a deployment for every function in functions/, the API's routes as the local
gateway's, no primitive roles, and syntax Terraform 1.0 reads."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import pytest

from tests.deploy.tools import (
    ENV_ROOT,
    MODULES,
    REPO,
    TERRAFORM,
    all_resources,
    function_folders,
    gateway_routes,
    generated_routes,
    load_dir,
    load_tf,
    locals_of,
    named_blocks,
    one,
    resolve,
    resources,
    tf_files,
)

FUNCTIONS = {
    "auth", "orders", "binance", "queries", "admin", "docs", "wallet", "watcher", "sweep",
    "sender", "audits", "reserves",
}  # fmt: skip
SCHEDULED = {"watcher", "sweep", "sender", "audits", "reserves"}


@cache
def module(name: str) -> dict[str, list[Any]]:
    return load_dir(MODULES / name)


@cache
def env() -> dict[str, list[Any]]:
    return load_dir(ENV_ROOT)


@cache
def env_locals() -> dict[str, Any]:
    return locals_of(env())


def env_local(name: str) -> Any:
    return resolve(env_locals()[name], env_locals())


def function_spec(name: str) -> dict[str, Any]:
    """A function's row over its trigger's defaults, as locals.tf's ``functions`` merges them."""
    spec = env_locals()["function_specs"][name]
    return {**env_locals()["function_defaults"][spec["trigger"]], **spec}


def call(name: str) -> dict[str, Any]:
    """The environment root's ``module "name"`` block."""
    return named_blocks(env(), "module")[name]


# ------------------------------------------------------------------------------- structure


def test_every_file_parses_and_every_module_is_used() -> None:
    files = tf_files()
    assert len(files) >= 20
    for path in files:
        assert load_tf(path), path
    modules = {p.name for p in MODULES.iterdir() if p.is_dir()}
    used = {
        body["source"].rsplit("/", 1)[-1]
        for root in (ENV_ROOT, TERRAFORM / "bootstrap")
        for body in named_blocks(load_dir(root), "module").values()
    }
    assert modules == used, f"unused modules: {modules - used}"


def test_providers_pinned_and_backend_left_to_configure() -> None:
    terraform = one(env()["terraform"])
    assert terraform["required_version"] == ">= 1.0"
    providers = one(terraform["required_providers"])
    assert providers["google"]["source"] == "hashicorp/google"
    assert re.fullmatch(r"~> 6\.\d+", providers["google"]["version"])
    assert one(terraform["backend"]) == {"gcs": {}}, "partial gcs backend, configured at init"
    assert (ENV_ROOT / "backend.hcl.example").is_file()
    bootstrap = one(load_dir(TERRAFORM / "bootstrap")["terraform"])
    assert re.fullmatch(r"~> 6\.\d+", one(bootstrap["required_providers"])["google"]["version"])


def test_syntax_stays_terraform_1_0_compatible() -> None:
    """terraform fmt runs with Terraform 1.0.3 (the one on PyPI): no later syntax."""
    later = re.compile(
        r"\boptional\(|\b(startswith|endswith|strcontains|timecmp|plantimestamp)\(|"
        r"^\s*(moved|import|removed|check)\s*\{|\b(pre|post)condition\s*\{|\bnullable\s*=",
        re.MULTILINE,
    )
    for path in tf_files():
        code = "\n".join(line.split("#", 1)[0] for line in path.read_text().splitlines())
        assert not later.search(code), f"{path.relative_to(REPO)}: {later.search(code)}"


def test_variables_are_described_typed_and_validated() -> None:
    for directory in [ENV_ROOT, TERRAFORM / "bootstrap", *sorted(MODULES.iterdir())]:
        for name, body in named_blocks(load_dir(directory), "variable").items():
            where = f"{directory.relative_to(TERRAFORM)} var.{name}"
            assert body.get("description"), f"{where} has no description"
            assert body.get("type"), f"{where} has no type"
    variables = named_blocks(env(), "variable")
    for name in (
        "project_id", "region", "environment", "name", "image_tag", "api_domain",
        "cors_origins", "auth_keys_version", "schedules", "hot_wallet_address",
        "gas_wallet_address", "chain_id", "http_max_instances", "ws_max_instances",
        "commands_max_delivery_attempts",
    ):  # fmt: skip
        assert variables[name].get("validation"), f"var.{name} has no validation"


def test_outputs_give_an_operator_what_they_need() -> None:
    outputs = named_blocks(env(), "output")
    for name in (
        "api_url", "ws_url", "api_ip_address", "api_domain", "certificate", "migrate_job",
        "cloud_sql_instance", "secrets", "service_accounts", "scheduler_jobs",
        "dead_letter_subscription", "matcher_service",
    ):  # fmt: skip
        assert name in outputs, name
    for directory in [ENV_ROOT, TERRAFORM / "bootstrap", *sorted(MODULES.iterdir())]:
        for name, body in named_blocks(load_dir(directory), "output").items():
            assert body.get("description"), f"{directory.name} output {name}"


def test_apis_enabled_for_every_service_used() -> None:
    used = {rtype for d in MODULES.iterdir() for rtype, _, _ in all_resources(load_dir(d))}
    api_of = {
        "google_cloudfunctions2_": "cloudfunctions.googleapis.com",
        "google_cloud_run_": "run.googleapis.com",
        "google_pubsub_": "pubsub.googleapis.com",
        "google_sql_": "sqladmin.googleapis.com",
        "google_redis_": "redis.googleapis.com",
        "google_firestore_": "firestore.googleapis.com",
        "google_secret_manager_": "secretmanager.googleapis.com",
        "google_cloud_scheduler_": "cloudscheduler.googleapis.com",
        "google_vpc_access_": "vpcaccess.googleapis.com",
        "google_service_networking_": "servicenetworking.googleapis.com",
        "google_compute_": "compute.googleapis.com",
        "google_storage_": "storage.googleapis.com",
        "google_service_account": "iam.googleapis.com",
    }
    needed = {api for rtype in used for prefix, api in api_of.items() if rtype.startswith(prefix)}
    needed |= {"cloudbuild.googleapis.com", "artifactregistry.googleapis.com"}  # function builds
    bootstrap = load_dir(TERRAFORM / "bootstrap")
    enabled = set(resolve(locals_of(bootstrap)["services"], {}))
    assert needed <= enabled, f"APIs not enabled: {needed - enabled}"
    call_ = named_blocks(bootstrap, "module")["services"]
    assert call_["services"] == "${local.services}"


# ------------------------------------------------------------------------------- Pub/Sub


def test_commands_subscription_orders_and_dead_letters() -> None:
    pubsub = module("pubsub")
    topics = resources(pubsub, "google_pubsub_topic")
    assert {"commands", "events", "dead_letter"} <= set(topics)
    sub = resources(pubsub, "google_pubsub_subscription")["commands_matcher"]
    assert sub["topic"] == "${google_pubsub_topic.commands.id}"
    assert sub["enable_message_ordering"] is True
    dead = one(sub["dead_letter_policy"])
    assert dead["dead_letter_topic"] == "${google_pubsub_topic.dead_letter.id}"
    assert dead["max_delivery_attempts"] == "${var.max_delivery_attempts}"
    retry = one(sub["retry_policy"])
    assert retry["minimum_backoff"] and retry["maximum_backoff"]
    assert one(sub["expiration_policy"])["ttl"] == "", "the subscription never expires"
    assert "enable_exactly_once_delivery" in sub
    hold = resources(pubsub, "google_pubsub_subscription")["dead_letter_hold"]
    assert hold["topic"] == "${google_pubsub_topic.dead_letter.id}"


def test_pubsub_service_agent_can_forward_dead_letters() -> None:
    pubsub = module("pubsub")
    agent = locals_of(pubsub)["pubsub_service_agent"]
    assert "@gcp-sa-pubsub.iam.gserviceaccount.com" in agent
    publisher = resources(pubsub, "google_pubsub_topic_iam_member")["dead_letter_publisher"]
    assert publisher["topic"] == "${google_pubsub_topic.dead_letter.name}"
    assert publisher["role"] == "roles/pubsub.publisher"
    assert publisher["member"] == "${local.pubsub_service_agent}"
    subscriber = resources(pubsub, "google_pubsub_subscription_iam_member")
    forward = subscriber["dead_letter_source_subscriber"]
    assert forward["subscription"] == "${google_pubsub_subscription.commands_matcher.name}"
    assert forward["role"] == "roles/pubsub.subscriber"
    assert forward["member"] == "${local.pubsub_service_agent}"


def test_pubsub_grants_follow_the_tables() -> None:
    assert set(env_local("commands_publishers")) == {
        "orders",
        "binance",
        "admin",
        "wallet",
        "watcher",
        "sender",
    }
    assert env_local("commands_consumers") == ["matcher"]
    assert env_local("events_publishers") == ["matcher"]
    pubsub = call("pubsub")
    assert "local.commands_publishers" in pubsub["commands_publishers"]
    assert "local.commands_consumers" in pubsub["commands_subscribers"]
    assert "local.events_publishers" in pubsub["events_publishers"]
    # The console's dead letters: the admin function alone pulls them, from the hold
    # subscription only.
    assert env_local("dead_letter_readers") == ["admin"]
    assert "local.dead_letter_readers" in pubsub["dead_letter_readers"]
    readers = resources(module("pubsub"), "google_pubsub_subscription_iam_member")
    hold = readers["dead_letter_readers"]
    assert hold["subscription"] == "${google_pubsub_subscription.dead_letter_hold.name}"
    assert hold["role"] == "roles/pubsub.subscriber"
    # The matcher dead-letters what it refuses itself: it publishes to the dead-letter topic.
    assert "local.commands_consumers" in pubsub["dead_letter_publishers"]
    topic_members = resources(module("pubsub"), "google_pubsub_topic_iam_member")
    refused = topic_members["dead_letter_publishers"]
    assert refused["topic"] == "${google_pubsub_topic.dead_letter.name}"
    assert refused["role"] == "roles/pubsub.publisher"


# ------------------------------------------------------------------------------- Cloud Run


def test_matcher_runs_exactly_one_instance_with_cpu_always_allocated() -> None:
    matcher = call("matcher")
    assert matcher["source"] == "../../modules/run_service"
    assert matcher["min_instances"] == 1 and matcher["max_instances"] == 1
    assert matcher["cpu_always_allocated"] is True
    assert matcher["ingress"] == "INGRESS_TRAFFIC_INTERNAL_ONLY"
    assert matcher["invokers"] == {}, "nobody invokes the matcher"
    assert matcher["image"] == '${local.images["matcher"]}'
    assert "matcher" in env_local("postgres_users"), "the matcher gets the Cloud SQL connection"
    assert "matcher" in env_local("redis_users")

    service = resources(module("run_service"), "google_cloud_run_v2_service")["this"]
    template = one(service["template"])
    scaling = one(template["scaling"])
    assert scaling == {
        "min_instance_count": "${var.min_instances}",
        "max_instance_count": "${var.max_instances}",
    }
    container = one(template["containers"])
    assert one(container["resources"])["cpu_idle"] == "${!var.cpu_always_allocated}"
    for probe in ("startup_probe", "liveness_probe"):
        assert one(one(container[probe])["http_get"])["path"] == "${var.health_path}"
    vpc = one(template["vpc_access"])
    assert vpc["egress"] == "PRIVATE_RANGES_ONLY"


def test_ws_service_scales_out_with_affinity_and_long_requests() -> None:
    ws = call("ws")
    assert ws["max_instances"] == "${var.ws_max_instances}"
    default = named_blocks(env(), "variable")["ws_max_instances"]["default"]
    assert default > 1
    assert ws["session_affinity"] is True
    assert ws["timeout_seconds"] == 3600
    assert ws["ingress"] == "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"
    assert ws["health_path"] == "/healthz"
    template = one(
        resources(module("run_service"), "google_cloud_run_v2_service")["this"]["template"]
    )
    assert template["session_affinity"] == "${var.session_affinity}"
    assert template["timeout"] == "${var.timeout_seconds}s"


def test_migrations_run_as_a_job_in_the_vpc() -> None:
    job = call("migrate")
    assert job["command"] == ["python", "-m", "migrations.migrate"]
    assert job["image"] == '${local.images["matcher"]}'
    assert "migrate" in env_local("postgres_users")
    body = resources(module("run_job"), "google_cloud_run_v2_job")["this"]
    inner = one(one(body["template"])["template"])
    assert one(inner["vpc_access"])["egress"] == "PRIVATE_RANGES_ONLY"


# ------------------------------------------------------------------------------- data stores


def test_cloud_sql_is_private_with_backups_and_pitr() -> None:
    sql = resources(module("database"), "google_sql_database_instance")["postgres"]
    assert sql["database_version"] == "POSTGRES_15"
    settings = one(sql["settings"])
    ip = one(settings["ip_configuration"])
    assert ip["ipv4_enabled"] is False, "no public IP"
    assert ip["private_network"] == "${var.network_id}"
    assert "authorized_networks" not in ip
    assert ip["ssl_mode"] in ("ENCRYPTED_ONLY", "TRUSTED_CLIENT_CERTIFICATE_REQUIRED")
    backup = one(settings["backup_configuration"])
    assert backup["enabled"] is True
    assert backup["point_in_time_recovery_enabled"] is True
    assert call("database")["depends_on"] == ["${module.network}"], "peering first"


def test_redis_has_no_public_address_and_requires_auth() -> None:
    redis = resources(module("redis"), "google_redis_instance")["cache"]
    assert redis["connect_mode"] == "PRIVATE_SERVICE_ACCESS"
    assert redis["authorized_network"] == "${var.network_id}"
    assert redis["auth_enabled"] is True
    outputs = named_blocks(module("redis"), "output")
    assert outputs["url"]["sensitive"] is True, "REDIS_URL carries the AUTH string"
    assert env_local("secret_value_env")["redis_url"] == "REDIS_URL"


def test_no_public_ip_anywhere_but_the_load_balancer() -> None:
    for directory in sorted(MODULES.iterdir()):
        for rtype, name, body in all_resources(load_dir(directory)):
            if rtype == "google_compute_global_address" and directory.name != "api_entry":
                assert body.get("purpose") == "VPC_PEERING", f"{rtype}.{name}"
            assert rtype not in ("google_compute_address", "google_compute_instance"), name
            assert body.get("ingress") != "INGRESS_TRAFFIC_ALL", f"{rtype}.{name}"


def test_firestore_native_with_pitr() -> None:
    db = resources(module("firestore"), "google_firestore_database")["main"]
    assert db["type"] == "FIRESTORE_NATIVE"
    assert db["point_in_time_recovery_enablement"] == "POINT_IN_TIME_RECOVERY_ENABLED"


def test_network_gives_private_services_access_and_a_connector() -> None:
    network = module("network")
    assert resources(network, "google_service_networking_connection")
    assert resources(network, "google_vpc_access_connector")
    subnet = resources(network, "google_compute_subnetwork")["main"]
    assert subnet["private_ip_google_access"] is True


# ------------------------------------------------------------------------------- secrets


def test_secrets_are_readable_only_by_the_deployables_that_need_them() -> None:
    readers = {k: set(v) for k, v in env_local("secret_readers").items()}
    # Only auth signs access tokens; the verifiers get the public keys.
    assert readers["auth_keys"] == {"auth"}
    assert readers["auth_verify_keys"] == {"orders", "binance", "queries", "admin", "wallet", "ws"}
    # Each producer its own command-signing key; the matcher the public ones.
    for producer in ("orders", "binance", "wallet", "watcher", "sender", "admin"):
        assert readers[f"command_key_{producer}"] == {producer}
    assert readers["command_public_keys"] == {"matcher"}
    assert set(env_local("commands_publishers")) == {
        "orders",
        "binance",
        "wallet",
        "watcher",
        "sender",
        "admin",
    }
    assert readers["cursor_key"] == {"queries", "wallet"}
    assert readers["wallet_mnemonic"] == {"wallet", "sweep"}
    assert readers["hot_wallet_key"] == {"sender"}
    assert readers["gas_wallet_key"] == {"sweep"}
    assert readers["db_password"] == set(env_local("postgres_users"))
    assert readers["redis_url"] == set(env_local("redis_users"))
    assert "docs" not in set().union(*readers.values()), "docs needs no secret"

    secrets = call("secrets")
    assert secrets["accessors"] == "${local.secret_readers}"
    assert set(env_local("secrets")) == set(readers)
    module_ = module("secrets")
    bindings = resources(module_, "google_secret_manager_secret_iam_member")
    assert set(bindings) == {"accessor"}
    accessor = bindings["accessor"]
    assert accessor["role"] == "roles/secretmanager.secretAccessor"
    assert accessor["member"] == "${each.value.member}"
    assert "var.accessors" in locals_of(module_)["bindings"]


def test_no_secret_access_granted_any_other_way() -> None:
    for path in tf_files():
        if path.parent in (MODULES / "secrets", TERRAFORM / "bootstrap"):
            continue  # the deployer's grants are checked below
        text = path.read_text()
        assert "roles/secretmanager.secretAccessor" not in text, path
        assert "google_secret_manager_secret_iam" not in text, path
    # The environment: a secret's variable reaches exactly that secret's readers.
    env_ = env_locals()
    assert "contains(local.secret_readers[key], d)" in env_["env"]
    assert "contains(local.secret_readers[key], d)" in env_["secret_env"]


def test_the_deployer_cannot_read_the_operators_secrets() -> None:
    bootstrap = load_dir(TERRAFORM / "bootstrap")
    roles = set(resolve(locals_of(bootstrap)["deployer_roles"], {}))
    assert not any("secretmanager" in r for r in roles), "no predefined Secret Manager role"
    custom = resources(bootstrap, "google_project_iam_custom_role")["secrets_deployer"]
    permissions = set(custom["permissions"])
    assert "secretmanager.versions.add" in permissions
    assert "secretmanager.versions.access" not in permissions
    # The only reading grant: conditional, on the two secrets Terraform generates.
    members = resources(bootstrap, "google_project_iam_member")
    readers = {n: m for n, m in members.items() if "secretAccessor" in str(m.get("role"))}
    assert set(readers) == {"deployer_generated_secrets"}
    expression = one(readers["deployer_generated_secrets"]["condition"])["expression"]
    assert "-db-password" in expression and "-redis-url" in expression
    for operator_secret in ("mnemonic", "wallet-key", "auth-keys", "command"):
        assert operator_secret not in expression


def test_firestore_write_access_only_where_written() -> None:
    assert set(env_local("firestore_users")) == {"auth", "admin", "wallet"}
    assert set(env_local("firestore_readers")) == {
        "ws", "orders", "binance", "queries", "watcher", "sweep", "sender", "reserves",
    }  # fmt: skip


def test_operator_secrets_have_no_value_in_terraform() -> None:
    generated = call("secrets")["generated"]
    assert set(generated) == {"db_password", "redis_url"}
    for key in (
        "auth_keys", "auth_verify_keys", "cursor_key", "wallet_mnemonic", "hot_wallet_key",
        "gas_wallet_key", "command_public_keys", "command_key_orders", "command_key_binance",
        "command_key_sender",
    ):  # fmt: skip
        assert key not in generated
    assert env_local("secret_version_env")["cursor_key"] == "CURSOR_KEY_SECRET"


# ------------------------------------------------------------------------------- IAM


def test_no_primitive_roles() -> None:
    primitive = re.compile(r"roles/(owner|editor|viewer)\b")
    for path in tf_files():
        code = "\n".join(
            line for line in path.read_text().splitlines() if "error_message" not in line
        )
        for match in primitive.finditer(code):
            line = code[: match.start()].count("\n")
            context = code.splitlines()[line]
            assert "contains([" in context, f"{path.relative_to(REPO)}: {context.strip()}"


def test_one_service_account_per_deployable_with_least_project_roles() -> None:
    # The deployables: every function plus the two services and the job.
    assert env_locals()["deployables"] == (
        '${concat(keys(local.functions), ["matcher", "ws", "migrate"])}'
    )
    accounts = call("service_accounts")
    assert "fn-${f}" in accounts["accounts"]
    roles = accounts["project_roles"]
    for role in ("roles/datastore.user", "roles/datastore.viewer", "roles/cloudsql.client"):
        assert role in roles
    assert "roles/pubsub" not in roles, "Pub/Sub is granted on topics and subscriptions"
    assert "secretmanager" not in roles
    bootstrap = locals_of(load_dir(TERRAFORM / "bootstrap"))
    grantable = set(resolve(bootstrap["grantable_roles"], {}))
    granted = set(re.findall(r"roles/[a-zA-Z.]+", str(accounts)))
    assert granted <= grantable, f"the deployer may not grant {granted - grantable}"


def test_every_service_account_id_fits_with_the_longest_name_and_environment() -> None:
    """Google's service account ids are 6 to 30 characters: ``NAME-ENV-SHORT`` must fit with
    the longest name and environment the variables' validations let through."""
    variables = named_blocks(env(), "variable")
    longest = {}
    for var in ("name", "environment"):
        rule = one(variables[var]["validation"])["condition"]
        match = re.search(r"\{\d+,(\d+)\}", rule)
        assert match, rule
        longest[var] = 1 + int(match.group(1))  # the first letter and the rest
    assert env_locals()["prefix"] == "${var.name}-${var.environment}"
    accounts = [f"fn-{f}" for f in FUNCTIONS] + ["matcher", "ws", "migrate", "scheduler"]
    for short in [*accounts, "fn-build"]:
        assert longest["name"] + 1 + longest["environment"] + 1 + len(short) <= 30, short


def test_deployer_may_grant_only_the_deployables_roles() -> None:
    bootstrap = load_dir(TERRAFORM / "bootstrap")
    iam = resources(bootstrap, "google_project_iam_member")["deployer_iam"]
    assert iam["role"] == "roles/resourcemanager.projectIamAdmin"
    assert "modifiedGrantsByRole" in one(iam["condition"])["expression"]
    roles = set(resolve(locals_of(bootstrap)["deployer_roles"], {}))
    assert not any(
        r.endswith((".owner", "/owner", "/editor")) for r in roles - {"roles/datastore.owner"}
    )


# ------------------------------------------------------------------------------- functions


def test_every_function_in_functions_has_a_deployment() -> None:
    declared = set(env_locals()["function_specs"])
    assert declared == FUNCTIONS
    assert env_locals()["functions"] == (
        "${{for f, spec in local.function_specs :"
        " f => merge(local.function_defaults[spec.trigger], spec)}}"
    )
    missing = set(function_folders()) - declared
    assert not missing, f"functions/ has {missing} but terraform does not deploy it"
    functions = call("functions")
    assert "for f, spec in local.functions" in functions["functions"]
    fn = resources(module("functions"), "google_cloudfunctions2_function")["this"]
    assert fn["for_each"] == "${var.functions}"
    build = one(fn["build_config"])
    assert build["entry_point"] == "${local.manifest.functions[each.key].entry_point}"
    assert build["runtime"] == "${local.manifest.runtime}"


def test_every_function_row_gives_what_the_module_needs() -> None:
    """Terraform cannot validate offline: a row merged over its defaults must carry exactly the
    attributes of the module's ``functions`` object (main.tf adds the account and the env)."""
    variable = named_blocks(module("functions"), "variable")["functions"]["type"]
    needed = set(re.findall(r"(\w+) = ", variable)) - {"service_account", "env", "secret_env"}
    for name in FUNCTIONS:
        assert set(function_spec(name)) == needed, name
    assert set(env_locals()["function_defaults"]) == {"http", "schedule"}


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_function_trigger(name: str) -> None:
    spec = function_spec(name)
    if name in SCHEDULED:
        assert spec["trigger"] == "schedule"
        assert spec["schedule"] == f'${{var.schedules["{name}"]}}'
        assert spec["max_instances"] == 1 and spec["concurrency"] == 1
    else:
        assert spec["trigger"] == "http"
        assert spec["schedule"] == ""


def test_every_scheduled_function_has_a_private_oidc_job() -> None:
    defaults = named_blocks(env(), "variable")["schedules"]["default"]
    assert set(defaults) == SCHEDULED
    assert all(len(s.split()) == 5 for s in defaults.values())
    mod = module("functions")
    scheduled = locals_of(mod)["scheduled"]
    assert 'f.trigger == "schedule"' in scheduled
    job = resources(mod, "google_cloud_scheduler_job")["this"]
    assert job["for_each"] == "${local.scheduled}"
    target = one(job["http_target"])
    oidc = one(target["oidc_token"])
    assert oidc["service_account_email"] == "${var.scheduler_service_account}"
    assert oidc["audience"] == target["uri"]
    invokers = resources(mod, "google_cloud_run_service_iam_member")
    assert invokers["scheduler"]["for_each"] == "${local.scheduled}"
    assert invokers["scheduler"]["member"] == "serviceAccount:${var.scheduler_service_account}"
    assert invokers["public"]["for_each"] == "${local.http}", "only HTTP functions are public"
    fn = resources(mod, "google_cloudfunctions2_function")["this"]
    ingress = one(fn["service_config"])["ingress_settings"]
    assert ingress == (
        '${each.value.trigger == "http" ? "ALLOW_INTERNAL_AND_GCLB" : "ALLOW_INTERNAL_ONLY"}'
    )


def test_the_on_chain_audit_reads_what_it_audits_and_holds_no_key() -> None:
    """The scheduled on-chain audit (functions/reserves): the chain's RPC URL, Postgres and
    Firestore's deposit addresses, read only; no wallet key, no Redis, no Pub/Sub."""
    readers = {k: set(v) for k, v in env_local("secret_readers").items()}
    assert {k for k, v in readers.items() if "reserves" in v} == {"eth_rpc_url", "db_password"}
    assert "reserves" in env_local("firestore_readers")
    assert "reserves" not in env_local("firestore_users")
    assert "reserves" in env_local("postgres_users")
    assert "reserves" in env_local("wallet_users")  # CHAIN_ID, the addresses, the funding
    assert "reserves" not in env_local("redis_users")
    assert "reserves" not in env_local("commands_publishers")
    assert "OPERATOR_ETH_WEI = var.operator_eth_wei" in env_locals()["wallet_env"]
    assert named_blocks(env(), "variable")["operator_eth_wei"]["default"] == "0"
    assert function_spec("reserves")["trigger"] == "schedule"


def test_functions_reach_the_vpc_through_the_connector() -> None:
    fn = resources(module("functions"), "google_cloudfunctions2_function")["this"]
    service = one(fn["service_config"])
    assert service["vpc_connector"] == "${var.vpc_connector}"
    assert service["vpc_connector_egress_settings"] == "PRIVATE_RANGES_ONLY"
    assert service["service_account_email"] == "${each.value.service_account}"


def test_function_sources_are_named_by_content_hash() -> None:
    obj = resources(module("functions"), "google_storage_bucket_object")["source"]
    assert obj["name"] == "${local.manifest.functions[each.key].object}"
    assert env_locals()["manifest"].endswith('build/functions/manifest.json"}')


# ------------------------------------------------------------------------------- the entry


def test_load_balancer_routes_match_the_local_gateway() -> None:
    assert env_local("routes") == '${jsondecode(file("${path.module}/routes.json"))}'
    routes = generated_routes()
    http_functions = {k for k in FUNCTIONS if function_spec(k)["trigger"] == "http"}
    assert {b for _, _, b in routes} <= http_functions | {"ws"}
    local = gateway_routes()
    for method, prefix, function in local:
        assert (method, prefix, function) in routes, f"{method} {prefix} -> {function}"
    extra = set(routes) - set(local)
    ws_paths = {("", p, "ws") for p in ("/v1/ws", "/ws", "/stream", "/ws-api/v3")}
    assert extra <= ws_paths, f"routes the gateway does not have: {extra}"
    for i, (method, prefix, _) in enumerate(routes):
        if method:
            plain = [j for j, (m, p, _) in enumerate(routes) if p == prefix and not m]
            assert all(i < j for j in plain), f"{method} {prefix} must come first"
    assert len(set(routes)) == len(routes)


def test_load_balancer_is_https_only_with_a_modern_tls_policy() -> None:
    entry = module("api_entry")
    proxy = resources(entry, "google_compute_target_https_proxy")["api"]
    assert proxy["ssl_policy"] == "${google_compute_ssl_policy.modern.id}"
    policy = resources(entry, "google_compute_ssl_policy")["modern"]
    assert policy["min_tls_version"] == "TLS_1_2"
    redirect = resources(entry, "google_compute_url_map")["redirect"]
    assert one(redirect["default_url_redirect"])["https_redirect"] is True
    for rule in resources(entry, "google_compute_global_forwarding_rule").values():
        assert rule["load_balancing_scheme"] == "EXTERNAL_MANAGED"
    url_map = resources(entry, "google_compute_url_map")["api"]
    matcher = one(url_map["path_matcher"])
    assert "route_rules" in str(matcher) and ":method" in str(matcher)
    assert call("api_entry")["default_backend"] == "docs"
