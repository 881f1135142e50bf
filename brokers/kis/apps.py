from django.apps import AppConfig


class KisConfig(AppConfig):
    name = "brokers.kis"
    label = "kis"
    verbose_name = "Korea Investment & Securities"

    def ready(self) -> None:
        from brokers.kis.adapter import kis_broker_factory
        from brokers.kis.hooks import kis_token_keys, kis_tokens_refresh
        from brokers.registry import register_broker, register_token_keys, register_token_refresher

        register_broker("kis", kis_broker_factory)
        # The account status shows these tokens; the scheduled refresh and the
        # admin's "refresh token now" renew them.
        register_token_keys("kis", kis_token_keys)
        register_token_refresher("kis", kis_tokens_refresh)

        # The live feed: registered here, connected only where the market-data loop runs.
        from brokers.kis.ws import provider
        from marketdata.feeds.registry import register_feed_provider

        register_feed_provider(provider)
