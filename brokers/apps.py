from django.apps import AppConfig


class BrokersConfig(AppConfig):
    name = "brokers"
    verbose_name = "Brokers"

    def ready(self) -> None:
        from brokers.ccxt_passthrough import ccxt_ws_call
        from streams.registry import register_call_handler

        # The gateway's upstream {"namespace": "ccxt", "action": "call"} frames.
        register_call_handler("ccxt", ccxt_ws_call)
