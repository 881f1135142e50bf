from django.apps import AppConfig
from django.conf import settings


class MarketdataConfig(AppConfig):
    name = "marketdata"
    verbose_name = "Market data"

    def ready(self) -> None:
        from core.loops import register_loop
        from marketdata.simulation import simulator_step

        if settings.SIMULATOR_ENABLED:
            register_loop("marketdata.simulator", simulator_step, interval=lambda: settings.SIMULATOR_TICK_INTERVAL)
