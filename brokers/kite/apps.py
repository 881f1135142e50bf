from django.apps import AppConfig


class KiteConfig(AppConfig):
    name = "brokers.kite"
    label = "kite"
    verbose_name = "Zerodha Kite"

    def ready(self) -> None:
        from brokers.kite.adapter import kite_broker_factory
        from brokers.kite.hooks import kite_login_required, kite_token_keys
        from brokers.registry import register_broker, register_login_check, register_token_keys

        register_broker("kite", kite_broker_factory)
        # The account status shows the access token; without a valid one the
        # account is login_required (a person logs in to Kite; nothing refreshes it).
        register_token_keys("kite", kite_token_keys)
        register_login_check("kite", kite_login_required)

        # The ticker: registered here, connected only where the market-data loop runs.
        from brokers.kite.ticker_feed import provider
        from marketdata.feeds.registry import register_feed_provider

        register_feed_provider(provider)
