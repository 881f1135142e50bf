"""The broker settings' defaults are the broker's published facts
(settings import no app, so the literals are written twice: checked here)."""

from __future__ import annotations

import re

from brokers.kis import protocol
from tests.servers import ROOT


def _default(name: str) -> str:
    source = (ROOT / "config" / "settings.py").read_text()
    match = re.search(rf'^{name} = env\.\w+\("{name}", default=([^)]*)\)', source, re.MULTILINE)
    assert match, name
    return match.group(1).strip('"')


def test_kis_hosts_default_to_the_real_kis_hosts():
    assert _default("KIS_PAPER_REST_URL") == protocol.PAPER_REST_URL
    assert _default("KIS_PAPER_WS_URL") == protocol.PAPER_WS_URL
    assert _default("KIS_LIVE_REST_URL") == protocol.LIVE_REST_URL
    assert _default("KIS_LIVE_WS_URL") == protocol.LIVE_WS_URL


def test_kis_rates_default_to_the_published_limits():
    assert float(_default("KIS_RATE_LIVE")) == protocol.RATE_LIVE
    assert float(_default("KIS_RATE_PAPER")) == protocol.RATE_PAPER
