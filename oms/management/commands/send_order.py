from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from oms.management.commands._base import OmsCommand, present
from oms.models import OrderType, Side, TimeInForce
from oms.services.commands import PAYLOAD_FIELDS


class Command(OmsCommand):
    help = "send_order: write an order (pending_new) and send it to the account's broker after commit."
    command = "send_order"

    def add_payload_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--symbol", required=True)
        parser.add_argument("--side", required=True, choices=Side.values)
        parser.add_argument("--order-type", required=True, choices=OrderType.values)
        parser.add_argument("--qty", required=True, help="Decimal, e.g. 0.01")
        parser.add_argument("--price", help="limit and stop_limit")
        parser.add_argument("--stop-price", help="stop and stop_limit")
        parser.add_argument("--time-in-force", choices=TimeInForce.values)
        parser.add_argument("--strategy-id")
        parser.add_argument("--position-id", type=int, help="Hedging accounts: the position to add to or reduce.")
        parser.add_argument("--reduce-only", action="store_true", default=None)
        parser.add_argument("--client-order-id")

    def payload(self, options: dict[str, Any]) -> dict[str, Any]:
        return present(options, *sorted(PAYLOAD_FIELDS["send_order"]))
