import contextlib

from django.apps import AppConfig


class OmsConfig(AppConfig):
    name = "oms"
    verbose_name = "Orders, deals and positions"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate
        from prometheus_client import REGISTRY

        from brokers.registry import register_sinks, register_sync_requester
        from core.health import register_pipeline_check
        from marketdata.api import register_marks_provider
        from marketdata.instruments import register_symbol_mover
        from oms.health import AccountSyncCollector, OrderPipelineCollector, order_pipeline_check
        from oms.loops import register_loops
        from oms.schedules import install_on_migrate
        from oms.selectors import fills_marks
        from oms.services.fills import fills_apply, order_updates_apply
        from oms.services.symbols import orders_symbol_rename
        from oms.services.sync import account_sync_request
        from oms.specs.schema import command_message_schema
        from oms.streams import FundsChannel, OrdersChannel, PositionsChannel, ws_command
        from streams.registry import register_channel, register_command_handler

        register_sinks(fills=fills_apply, orders=order_updates_apply)
        # brokers must not import the OMS: the admin's "Sync now" asks through this.
        register_sync_requester(account_sync_request)
        post_migrate.connect(install_on_migrate, sender=self, dispatch_uid="oms.periodic_tasks_install")
        register_loops()
        for channel in (OrdersChannel(), PositionsChannel(), FundsChannel()):
            register_channel(channel)
        register_command_handler(ws_command, message_schema=command_message_schema)
        # The upstream Kite backend's order WebSocket paths: aliases of the channels above.
        from oms.upstream_ws import asyncapi_entries, routes
        from streams.asyncapi import register_endpoint_doc
        from streams.routing import register_websocket_route

        for route in routes:
            register_websocket_route(route)
        for path, entry in asyncapi_entries().items():
            register_endpoint_doc(path, entry)
        # marketdata must not import the OMS: the datafeed asks this provider for the user's fills.
        register_marks_provider(fills_marks)
        # Orders, deals and positions name instruments by symbol: they follow a rename.
        register_symbol_mover("oms", orders_symbol_rename)
        register_pipeline_check("order_pipeline", order_pipeline_check)
        # ValueError: registered already (ready() runs twice in some test set-ups).
        with contextlib.suppress(ValueError):
            REGISTRY.register(OrderPipelineCollector())
        with contextlib.suppress(ValueError):
            REGISTRY.register(AccountSyncCollector())
