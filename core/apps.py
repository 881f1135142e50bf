import contextlib

from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        from prometheus_client import REGISTRY

        from core.metrics import WorkersCollector

        # ValueError: registered already (ready() runs twice in some test set-ups).
        with contextlib.suppress(ValueError):
            REGISTRY.register(WorkersCollector())
