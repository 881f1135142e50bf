"""Crypto exchanges through the pinned ``ccxt`` library (never a hand-written client).

exchange.py builds and caches the ccxt exchange of an account; adapter.py is
the Broker; fake/ a local exchange server answering as Binance spot and
Binance USD-M futures do, for the tests and the demo."""
