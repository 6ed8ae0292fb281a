"""Binance's spot REST dialect of the exchange, as pure translation: symbols (``symbols``),
numbers (``numbers``), signatures (``signature``), errors (``errors``), the market's filters
(``markets``), order, trade and candle objects (``objects``), all pure; and what the dialect
reads (``reads``: Redis market data, the caller's rows in Postgres). functions/binance serves
the routes with these over the same commands, rules and rows as the native API, and the ws
service's Binance streams use the same symbols and number formats.
"""
