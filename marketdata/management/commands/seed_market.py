import time

from django.conf import settings
from django.core.management.base import BaseCommand

from marketdata.feeds.simulated import SimulatedFeed
from marketdata.simulation import demo_instruments_ensure, sim_instruments, simulator_backfill


class Command(BaseCommand):
    help = "Create the demo instruments (first start only) and fill simulated 1-minute history up to now."

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=settings.SIMULATOR_HISTORY_DAYS)

    def handle(self, *args, days: int, **options):
        created = demo_instruments_ensure()
        if created:
            self.stdout.write(f"Created {len(created)} demo instruments.")
        started = time.monotonic()
        feed = SimulatedFeed(sim_instruments(), settings.SIMULATOR_SEED)
        bars = simulator_backfill(feed=feed, until=time.time(), days=days)
        if bars:
            self.stdout.write(f"Stored {bars} simulated 1-minute bars in {time.monotonic() - started:.1f}s.")
