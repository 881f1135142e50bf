"""OMS services: every write of orders, deals and positions.

Import public names from the submodules:

- ``send``: ``order_send``/``orders_send`` (write pending_new, send after
  commit), ``order_submit``/``order_submit_claimed`` (the exactly-once send),
  ``order_create``, ``order_request``;
- ``amend``: ``order_cancel``, ``order_change``, their broker calls,
  ``orders_cancel_all``, ``order_get_for_account``;
- ``closing``: ``position_close``, ``positions_flatten_all``;
- ``lifecycle``: ``order_transition``, ``order_note``, ``order_settle``,
  ``order_find``, ``order_fill_status`` and the broker's answers
  (``order_apply_ack``/``_result``/``_broker_status``);
- ``fills`` (deals exactly once), ``positions`` (the projection, close_by,
  reassign, rebuild), ``reconcile``, ``sweeper``, ``funds``;
- ``commands`` (the wire envelope and idempotency);
- ``tx`` (``AccountTx``: the account lock, stream sequences, publication on
  commit), ``enqueue`` (one typed function per Celery task).
"""
