"""The benchmarks' own PostgreSQL database, on the server DATABASE_URL names."""

from __future__ import annotations

import os
import sys
from urllib.parse import urlparse, urlunparse


def bench_database_url(name: str, *, program: str) -> str:
    """DATABASE_URL with the database ``name`` in place of its own, created
    when missing; exits with a clear message when DATABASE_URL is not PostgreSQL."""
    parsed = urlparse(os.environ.get("DATABASE_URL", ""))
    if parsed.scheme not in ("postgres", "postgresql", "pgsql"):
        sys.exit(f"{program} needs PostgreSQL: set DATABASE_URL=postgres://user@host:5432/terminal_bench")
    import psycopg
    from psycopg import sql

    maintenance = urlunparse(parsed._replace(scheme="postgresql", path="/postgres"))
    with psycopg.connect(maintenance, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            print(f"created database {name}")
    return urlunparse(parsed._replace(path=f"/{name}"))


def bench_django_setup(name: str, *, program: str) -> str:
    """Django on the database ``name`` (``bench_database_url``), migrated; its URL."""
    url = bench_database_url(name, program=program)
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return url
