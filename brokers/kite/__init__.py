"""Zerodha Kite Connect v3: Indian markets (NSE, BSE, NFO, ...), INR.

client.py builds the official ``kiteconnect`` client for an account (its
api_key, the access token a login stored) and turns Kite's errors into the
Broker protocol's; adapter.py is the Broker; hooks.py what the shared broker
machinery asks (tokens, login_required); instruments.py imports Kite's
instrument master; ticker.py and ticker_feed.py the ticker; fake/ Kite
servers for tests, the demo and the benchmarks."""
