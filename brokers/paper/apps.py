from django.apps import AppConfig


class PaperConfig(AppConfig):
    name = "brokers.paper"
    label = "paper"
    verbose_name = "Paper broker"

    def ready(self) -> None:
        from brokers.paper.adapter import paper_broker_factory
        from brokers.paper.services import paper_on_quotes
        from brokers.paper.symbols import paper_symbol_rename
        from brokers.registry import register_broker
        from marketdata.instruments import register_symbol_mover
        from marketdata.simulation import register_quote_listener

        register_broker("paper", paper_broker_factory)
        # A module-level function: registering it again (ready() may run twice) is a no-op.
        register_quote_listener(paper_on_quotes)
        # The book names instruments by symbol: it follows a rename.
        register_symbol_mover("paper", paper_symbol_rename)
