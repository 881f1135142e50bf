"""Settings of the benchmark servers: the project's settings plus the floor URL.

Never used in production: only ``bench/requests_bench.py`` starts servers with
``DJANGO_SETTINGS_MODULE=bench.settings``.
"""

from config.settings import *  # noqa: F403

ROOT_URLCONF = "bench.floor_urls"
