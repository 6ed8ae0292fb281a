"""The database's schema: the SQL files here, applied in order, each once, by
``python -m migrations.migrate`` (the migration job, in the matcher's image; locally the stack
launcher). They cover every deployable's tables (the matcher's, the queries', the wallet's)."""
