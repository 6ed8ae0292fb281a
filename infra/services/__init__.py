"""The local services the exchange runs against: their configuration, how each one is
started, when it is ready, and stopping them all without leftovers.

Services, all on 127.0.0.1 by default:

========== ============================================ ============== ====================
name       what                                         default port   module
========== ============================================ ============== ====================
pubsub     Pub/Sub emulator (gcloud)                    8681           ``emulators``
firestore  Firestore emulator (gcloud, native mode)     8682           ``emulators``
postgres   throwaway PostgreSQL 15 cluster              55432          ``postgres``
redis      redis-server, kept only with redis_persist   56379          ``redis``
anvil      anvil Ethereum node, chain id 31337          8545           ``anvil``
========== ============================================ ============== ====================

Each service's module says how it is started and when it is ready (a ``Launch``);
``config`` holds the stack's ports and options (``StackConfig``), ``stack`` the ``Stack`` that
starts a set of them, waits for them and stops them, ``errors`` what goes wrong, and
``command_keys`` the development keys the commands' producers sign with.

Library use::

    with Stack(StackConfig.with_free_ports(), services=["postgres", "redis"]) as stack:
        env = stack.env()   # PGHOST, PGPORT, ..., REDIS_URL

Every service runs in its own session (process group). Stopping kills the whole group and every
process that was a descendant of the service when the stop began (gcloud spawns bash and java;
postgres children call setsid), so nothing is left behind. Postgres is first asked to stop with
``pg_ctl stop -m fast``.
"""

from infra.services.command_keys import write_command_keys as write_command_keys
from infra.services.config import StackConfig as StackConfig
from infra.services.errors import LocalStackError as LocalStackError
from infra.services.errors import PortInUseError as PortInUseError
from infra.services.errors import ServiceStartError as ServiceStartError
from infra.services.stack import Stack as Stack
