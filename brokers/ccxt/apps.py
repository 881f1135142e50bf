from django.apps import AppConfig


class CcxtConfig(AppConfig):
    name = "brokers.ccxt"
    label = "ccxt_broker"
    verbose_name = "Crypto exchanges (CCXT)"

    def ready(self) -> None:
        from brokers.ccxt.adapter import ccxt_broker_factory
        from brokers.registry import register_broker

        # API keys never expire: no token keys or refresher to register.
        register_broker("ccxt", ccxt_broker_factory)

        # The ticker poller: registered here, run only where the market-data loop runs.
        from brokers.ccxt.feed import provider
        from marketdata.feeds.registry import register_feed_provider

        register_feed_provider(provider)
