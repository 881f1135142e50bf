"""OMS services: every write of orders, deals and positions.

Import from the submodules: ``orders`` (send, cancel, change, close, the
broker's answers), ``fills`` (deals exactly once), ``positions`` (the
projection, close_by, reassign, rebuild), ``commands`` (the wire envelope and
idempotency), ``funds``, ``tx`` (the account lock and stream sequences).
"""
