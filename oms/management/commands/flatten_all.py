from __future__ import annotations

from oms.management.commands._base import OmsCommand


class Command(OmsCommand):
    help = "flatten_all: cancel working orders, then close every open position."
    command = "flatten_all"
