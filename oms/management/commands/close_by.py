from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from oms.management.commands._base import OmsCommand, present


class Command(OmsCommand):
    help = "close_by: close two opposite positions of one symbol against each other (internal deals)."
    command = "close_by"

    def add_payload_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--position-id-a", type=int, required=True)
        parser.add_argument("--position-id-b", type=int, required=True)

    def payload(self, options: dict[str, Any]) -> dict[str, Any]:
        return present(options, "position_id_a", "position_id_b")
