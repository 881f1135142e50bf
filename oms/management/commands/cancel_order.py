from __future__ import annotations

from oms.management.commands._base import OmsCommand


class Command(OmsCommand):
    help = "cancel_order: ask the broker to cancel a working order (allowed while trading is disabled)."
    command = "cancel_order"
