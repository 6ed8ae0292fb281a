"""The HTTP API's layer, under every API function (functions/<name>/main.py): requests and
answers (``http``), credentials and their checks (``auth``, ``credentials``, ``sessions``,
``throttle``), parameters and cursors, the OpenAPI document's pieces, the listed markets as the
API checks orders against them (``listings``), and ``dispatch`` (a command's way from a route to
Pub/Sub). The ws service authenticates its sockets with the same ``auth``, so its image carries
this package too; the matcher and the wallet's jobs do not import it."""
