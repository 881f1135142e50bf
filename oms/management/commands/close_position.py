from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from oms.management.commands._base import OmsCommand, present


class Command(OmsCommand):
    help = "close_position: a reduce-only market order for what remains of the position."
    command = "close_position"

    def add_payload_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--position-id", type=int, required=True)

    def payload(self, options: dict[str, Any]) -> dict[str, Any]:
        return present(options, "position_id")
