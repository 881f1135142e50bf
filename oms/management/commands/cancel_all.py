from __future__ import annotations

from oms.management.commands._base import OmsCommand


class Command(OmsCommand):
    help = "cancel_all: ask to cancel every working order of the account."
    command = "cancel_all"
