from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from oms.management.commands._base import OmsCommand, present


class Command(OmsCommand):
    help = "cancel_order: ask the broker to cancel a working order (allowed while trading is disabled)."
    command = "cancel_order"

    def add_payload_arguments(self, parser: CommandParser) -> None:
        order = parser.add_mutually_exclusive_group(required=True)
        order.add_argument("--order-id", type=int)
        order.add_argument("--client-order-id")

    def payload(self, options: dict[str, Any]) -> dict[str, Any]:
        return present(options, "order_id", "client_order_id")
