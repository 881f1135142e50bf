"""A fake KIS server on 127.0.0.1 that answers as KIS's documentation says
(REST and WebSocket), for the tests and the demo; it misbehaves on command.

    with FakeKisServer() as kis:
        kis.add_account("app-key", "app-secret", "50000001", hts_id="alice")
        kis.set_price("005930", 71000)
        kis.fault("token_expired")          # the next TR call answers EGW00123

Codes the fake chooses where KIS documents none (documented ones live in
brokers.kis.protocol): tokenP/Approval with an unknown app key answer HTTP 403
``{"error_code": "EGW00103"}``, a wrong secret ``EGW00105``, a second token within
the minute ``EGW00133``; a TR call with a wrong app key/secret, an unknown,
revoked or expired token answers HTTP 500 rt_cd "1" (EGW00103/EGW00105, and
EGW00123 for any token it does not honour); a tr_id not served by the app key's
environment (paper: V... and legacy V... ids; live: T...) or a bad custtype
answers HTTP 500 rt_cd "1" ``EGW00205``; business errors answer HTTP 200
rt_cd "1" with an APBK/OPSQ code.
"""

from brokers.kis.fake.server import FakeKisServer

__all__ = ["FakeKisServer"]
