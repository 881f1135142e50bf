from django.apps import AppConfig


class StreamsConfig(AppConfig):
    name = "streams"
    verbose_name = "WebSocket streams"

    def ready(self) -> None:
        from streams import system  # noqa: F401  (registers the system channel and its loop)
