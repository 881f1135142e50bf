"""Health, readiness and version endpoints: public, and honest about failures."""

from __future__ import annotations

import pytest
import requests
from django.conf import settings

from tests.servers import closed_port, run_daphne

CHECKS = {"database", "cache", "channel_layer", "celery_broker"}


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/v1/health", "/api/v1/health/"])
def test_health_is_public_and_carries_the_version(api, path, settings):
    # Tasks in this process: a worker is alive (tests/test_health_pipeline.py covers none).
    settings.CELERY_TASK_ALWAYS_EAGER = True
    from core.health import pipeline_health_clear

    pipeline_health_clear()
    response = api.get(path)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["version"] == settings.VERSION
    assert "git_revision" in body


def test_liveness_is_public_and_touches_nothing(api):
    response = api.get("/api/v1/health/live")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_version_names_the_server_and_api_version(api):
    response = api.get("/api/v1/version")
    assert response.status_code == 200
    body = response.json()
    assert body["version"] == settings.VERSION
    assert body["api_version"] == "v1"
    assert "git_revision" in body


def test_versions_lists_the_api_versions(api):
    response = api.get("/api/v1/versions")
    assert response.status_code == 200
    body = response.json()
    assert body["versions"] == ["v1"]
    assert body["current"] == "v1"


@pytest.mark.django_db
def test_ready_is_200_with_every_check_ok_on_the_running_config(api):
    response = api.get("/api/v1/health/ready")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == CHECKS
    assert all(check == {"status": "ok"} for check in body["checks"].values()), body


@pytest.mark.server
@pytest.mark.django_db(transaction=True)
def test_ready_is_503_naming_each_unreachable_service(tmp_path):
    # PostgreSQL and Redis on ports nothing listens on: the machine's real
    # services are never touched.
    database_url = f"postgres://postgres@127.0.0.1:{closed_port()}/x"
    redis_url = f"redis://127.0.0.1:{closed_port()}/0"
    with run_daphne(tmp_path, DATABASE_URL=database_url, REDIS_URL=redis_url, RUN_LOOPS_IN_PROCESS="false") as server:
        response = requests.get(f"{server.url}/api/v1/health/ready", timeout=30)
        # Liveness stays green: the process is fine, its dependencies are not.
        live = requests.get(f"{server.url}/api/v1/health/live", timeout=10)

    assert response.status_code == 503, response.text
    body = response.json()
    assert body["status"] == "fail"
    assert set(body["failing"]) == CHECKS
    assert body["error"]["code"] == "not_ready"
    for name in CHECKS:
        assert name in body["error"]["message"]
        assert body["checks"][name]["status"] == "fail"
        assert body["checks"][name]["detail"].startswith("unreachable")
        assert body["error"]["fields"][name]
    assert live.status_code == 200


@pytest.mark.server
@pytest.mark.django_db(transaction=True)
def test_ready_is_503_while_migrations_are_unapplied(tmp_path):
    empty_db = tmp_path / "empty.sqlite3"
    with run_daphne(tmp_path, DATABASE_URL=f"sqlite:///{empty_db}") as server:
        response = requests.get(f"{server.url}/api/v1/health/ready", timeout=30)

    assert response.status_code == 503, response.text
    body = response.json()
    assert body["failing"] == ["database"]
    assert "unapplied migration" in body["checks"]["database"]["detail"]
