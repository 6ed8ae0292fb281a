"""The live feed: a WebSocket service for market data and private order and balance updates.

It consumes the matcher's Redis PUBLISH stream (``live:*``, docs/marketdata.md) and serves
``/v1/ws`` (protocol: docs/ws.md). Stateless apart from what its own clients subscribed to,
so it scales out: every instance listens to Redis for its own clients only.

- ``protocol``: channel names, client operations, server messages as frames;
- ``topics``: the state kept per Redis channel (depth book, recent trades, ticker, candles,
  a user's updates), so a subscription starts with a snapshot the updates continue exactly;
- ``hub``: the one Redis pub/sub connection, topics made and dropped with their subscribers;
- ``session``: one client: subscriptions, authentication, its bounded outgoing line;
- ``auth``: the HTTP API's JWT and API-key checks on a socket;
- ``server``: the websockets server, probes, limits, graceful stop;
- ``binance``, ``binance_streams``: Binance's spot streams and user data stream on the same
  topics (docs/binance-api.md).
"""
