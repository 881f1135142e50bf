import contextlib

from django.apps import AppConfig


class OmsConfig(AppConfig):
    name = "oms"
    verbose_name = "Orders, deals and positions"

    def ready(self) -> None:
        from prometheus_client import REGISTRY

        from brokers.registry import register_sinks
        from core.health import register_pipeline_check
        from marketdata.api import register_marks_provider
        from oms.health import OrderPipelineCollector, order_pipeline_check
        from oms.loops import register_loops
        from oms.selectors import fills_marks
        from oms.services.fills import fills_apply
        from oms.services.lifecycle import order_apply_broker_status
        from oms.specs.schema import command_message_schema
        from oms.streams import FundsChannel, OrdersChannel, PositionsChannel, ws_command
        from streams.registry import register_channel, register_command_handler

        def order_updates(account_id, updates):  # type: ignore[no-untyped-def]
            for update in updates:
                order_apply_broker_status(account_id=account_id, status=update)

        register_sinks(fills=fills_apply, orders=order_updates)
        register_loops()
        for channel in (OrdersChannel(), PositionsChannel(), FundsChannel()):
            register_channel(channel)
        register_command_handler(ws_command, message_schema=command_message_schema)
        # marketdata must not import the OMS: the datafeed asks this provider for the user's fills.
        register_marks_provider(fills_marks)
        register_pipeline_check("order_pipeline", order_pipeline_check)
        # ValueError: registered already (ready() runs twice in some test set-ups).
        with contextlib.suppress(ValueError):
            REGISTRY.register(OrderPipelineCollector())
