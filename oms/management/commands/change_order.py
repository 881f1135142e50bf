from __future__ import annotations

from oms.management.commands._base import OmsCommand


class Command(OmsCommand):
    help = "change_order: a new qty, price and/or stop price of a working order."
    command = "change_order"
