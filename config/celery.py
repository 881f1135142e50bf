import os
from typing import Any

from celery import Celery
from celery.signals import task_postrun, worker_ready, worker_shutdown

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("terminal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_postrun.connect
def return_database_connections(sender: Any = None, **kwargs: Any) -> None:
    """Hand a worker's connection back to the pool (or close an unusable one)
    after each task, as Django does after each request. An eager task runs
    inside its caller's request or transaction: leave that alone."""
    if sender is not None and getattr(sender.request, "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()


@worker_ready.connect
def start_heartbeat(sender: Any = None, **kwargs: Any) -> None:
    """Tell /api/v1/health and /metrics this worker consumes the broker."""
    from core.workers import heartbeat_start

    heartbeat_start(hostname=getattr(sender, "hostname", None) or "celery")


@worker_shutdown.connect
def stop_heartbeat(**kwargs: Any) -> None:
    from core.workers import heartbeat_stop

    heartbeat_stop()
