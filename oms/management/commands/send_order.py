from __future__ import annotations

from oms.management.commands._base import OmsCommand


class Command(OmsCommand):
    help = "send_order: write an order (pending_new) and send it to the account's broker after commit."
    command = "send_order"
