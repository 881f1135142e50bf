from __future__ import annotations

from oms.management.commands._base import OmsCommand


class Command(OmsCommand):
    help = "close_by: close two opposite positions of one symbol against each other (internal deals)."
    command = "close_by"
