"""A fake crypto exchange on 127.0.0.1 answering as Binance's REST API does,
for ccxt's ``binance`` (kind ``spot``: /api/v3) and ``binanceusdm`` (kind
``futures``: /fapi), for the tests and the demo; it misbehaves on command.
With ``streams=True`` Binance's market streams (ccxt.pro) run beside it
(streams.py), fed by its price moves.

    with FakeCcxtExchange("spot") as fake:
        fake.add_account("key", "secret", {"USDT": "10000", "BTC": "1"})
        fake.set_price("BTCUSDT", "50000")
        options = fake.ccxt_options()          # an account's broker_options
        fake.fault("timeout_after_accept")     # the next request is booked, its answer lost
"""

from brokers.ccxt.fake.server import FakeCcxtExchange, fake_api_urls
from brokers.ccxt.fake.streams import FakeBinanceStreams, stream_ws_urls

__all__ = ["FakeBinanceStreams", "FakeCcxtExchange", "fake_api_urls", "stream_ws_urls"]
