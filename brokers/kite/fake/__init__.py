"""Fake Kite servers on 127.0.0.1 for the tests, the demo and the benchmark:
the REST API and login page (server.py, exchange.py) and the ticker (ticker.py)."""

from brokers.kite.fake.exchange import Instrument
from brokers.kite.fake.server import FakeKiteServer

__all__ = ["FakeKiteServer", "Instrument"]
