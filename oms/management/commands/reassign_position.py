from __future__ import annotations

from oms.management.commands._base import OmsCommand


class Command(OmsCommand):
    help = "reassign: move deals to another strategy and/or position (internal bookings; the deals stay)."
    command = "reassign"
