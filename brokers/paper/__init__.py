"""The paper broker: a simulated venue behind the Broker protocol.

engine.py (with book, ledger, orderbook, rules) is the pure-Python matching
core; models/store keep its book; services change it under the account's
row lock; adapter.py is the Broker; apps.py registers it and the quote
listener that matches on every simulator step."""
