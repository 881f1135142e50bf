from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from oms.management.commands._base import OmsCommand, present


class Command(OmsCommand):
    help = "reassign: move deals to another strategy and/or position (internal bookings; the deals stay)."
    command = "reassign"

    def add_payload_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--deal-ids", type=int, nargs="+", required=True)
        parser.add_argument("--target-strategy-id")
        parser.add_argument("--target-position-id", type=int)

    def payload(self, options: dict[str, Any]) -> dict[str, Any]:
        return present(options, "deal_ids", "target_strategy_id", "target_position_id")
