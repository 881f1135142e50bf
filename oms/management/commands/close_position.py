from __future__ import annotations

from oms.management.commands._base import OmsCommand


class Command(OmsCommand):
    help = "close_position: a reduce-only market order for what remains of the position."
    command = "close_position"
