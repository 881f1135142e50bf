"""The default periodic tasks (``settings.PERIODIC_TASKS``) as django-celery-beat
rows, which beat's ``DatabaseScheduler`` reads and staff edit in the admin.

Installed after every migrate, by name and only when missing: an interval or
an ``enabled`` flag changed in the admin is never overwritten. A deleted row
comes back on the next migrate; disable a task rather than delete it.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections

logger = logging.getLogger(__name__)


def periodic_tasks_install(*, using: str = DEFAULT_DB_ALIAS) -> list[str]:
    """Create the missing default periodic tasks; the names created."""
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    if PeriodicTask._meta.db_table not in connections[using].introspection.table_names():
        return []  # django_celery_beat not migrated (yet) in this database
    created = []
    for name, entry in settings.PERIODIC_TASKS.items():
        if PeriodicTask.objects.using(using).filter(name=name).exists():
            continue
        # Beat's intervals are whole seconds.
        every = max(1, round(float(entry["schedule"])))
        interval = IntervalSchedule.objects.using(using).filter(every=every, period=IntervalSchedule.SECONDS).order_by(
            "id"
        ).first() or IntervalSchedule.objects.using(using).create(every=every, period=IntervalSchedule.SECONDS)
        options: dict[str, Any] = entry.get("options", {})
        expires = options.get("expires")
        PeriodicTask.objects.using(using).create(
            name=name,
            task=entry["task"],
            interval=interval,
            args=json.dumps(entry.get("args", [])),
            kwargs=json.dumps(entry.get("kwargs", {})),
            expire_seconds=max(1, round(float(expires))) if expires else None,
            description=entry.get("description", "Default schedule (settings.PERIODIC_TASKS); edit it here."),
        )
        created.append(name)
    if created:
        logger.info("periodic tasks created: %s", ", ".join(created))
    return created


def install_on_migrate(sender: Any, using: str = DEFAULT_DB_ALIAS, **kwargs: Any) -> None:
    """``post_migrate`` receiver (also sent after a test database is flushed)."""
    periodic_tasks_install(using=using)
