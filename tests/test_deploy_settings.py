"""Deploy settings (issue 8, part 5): the documented production settings pass
``manage.py check --deploy``; https is enforced when configured; authenticated
API answers are never cached."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client, override_settings

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.django_db


def _documented_deploy_settings() -> dict[str, str]:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Deploy settings") :]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None
    pairs = dict(line.split("=", 1) for line in block.group(1).splitlines() if "=" in line)
    pairs["DJANGO_SECRET_KEY"] = secrets.token_urlsafe(50)
    return pairs


def test_check_deploy_passes_with_the_documented_production_settings(tmp_path):
    documented = _documented_deploy_settings()
    assert {"SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_PROXY_SSL_HEADER"} <= set(
        documented
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SECURE_", "DJANGO_", "SESSION_", "CSRF_"))}
    env.update(documented, VAR_DIR=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_without_deploy_settings_check_deploy_warns(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SECURE_", "SESSION_", "CSRF_"))}
    env.update(VAR_DIR=str(tmp_path), DJANGO_SECRET_KEY=secrets.token_urlsafe(50))
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "security.W004" in result.stderr and "security.W008" in result.stderr


@override_settings(SECURE_SSL_REDIRECT=True, SECURE_HSTS_SECONDS=31536000, SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"))
def test_https_is_enforced_behind_the_proxy_and_probes_stay_on_http(alice_key):
    client = Client()
    redirected = client.get("/api/v1/me", HTTP_X_API_KEY=alice_key)
    assert redirected.status_code == 301 and redirected["Location"].startswith("https://")
    secure = client.get("/api/v1/me", HTTP_X_API_KEY=alice_key, HTTP_X_FORWARDED_PROTO="https")
    assert secure.status_code == 200
    assert secure["Strict-Transport-Security"].startswith("max-age=31536000")
    assert client.get("/api/v1/health/live").status_code == 200


def test_authenticated_api_answers_are_not_cached(alice, alice_key):
    keyed = Client(HTTP_X_API_KEY=alice_key)
    for path in ("/api/v1/me", "/api/v1/api-keys", "/api/v1/accounts", "/api/v1/oms/orders/open"):
        response = keyed.get(path)
        assert response.status_code == 200, path
        assert "no-store" in response["Cache-Control"], path
    session = Client()
    session.force_login(alice)
    assert "no-store" in session.get("/api/v1/me")["Cache-Control"]
