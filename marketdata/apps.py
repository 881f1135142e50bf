import contextlib

from django.apps import AppConfig
from django.conf import settings


class MarketdataConfig(AppConfig):
    name = "marketdata"
    verbose_name = "Market data"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save
        from prometheus_client import REGISTRY

        from core.loops import register_loop
        from marketdata.metrics import BroadcastCollector
        from marketdata.models import Instrument
        from marketdata.simulation import SIMULATOR_LOOP, register_update_listener, simulator_step
        from marketdata.streaming import BarsChannel, QuotesChannel, bar_broadcast_step, on_market_update
        from streams.registry import register_channel

        # Any write of an instrument, through a service or not, invalidates the
        # history lookups (the services also say so themselves).
        post_save.connect(_instrument_written, sender=Instrument, dispatch_uid="marketdata.instrument_cache.save")
        post_delete.connect(_instrument_written, sender=Instrument, dispatch_uid="marketdata.instrument_cache.delete")
        register_channel(QuotesChannel())
        register_channel(BarsChannel())
        register_update_listener(on_market_update)
        from marketdata.fo import stream as chain_stream

        register_channel(chain_stream.ChainChannel())
        register_update_listener(chain_stream.on_market_update)
        if settings.SIMULATOR_ENABLED:
            register_loop(SIMULATOR_LOOP, simulator_step, interval=lambda: settings.SIMULATOR_TICK_INTERVAL)
        if settings.BROKER_FEEDS_ENABLED:
            from marketdata.feeds.registry import BROKER_FEEDS_LOOP, broker_feeds_step, feed_providers_stop

            register_loop(
                BROKER_FEEDS_LOOP, broker_feeds_step, interval=lambda: settings.BROKER_FEEDS_INTERVAL, on_stop=feed_providers_stop
            )
        if settings.BAR_BROADCASTER_ENABLED:
            register_loop("marketdata.bar_broadcaster", bar_broadcast_step, interval=lambda: settings.BAR_BROADCASTER_INTERVAL)
        # ValueError: registered already (ready() runs twice in some test set-ups).
        with contextlib.suppress(ValueError):
            REGISTRY.register(BroadcastCollector())


def _instrument_written(**kwargs: object) -> None:
    from marketdata.instrument_cache import instruments_changed

    instruments_changed()
