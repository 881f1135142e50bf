import pytest
import requests


@pytest.mark.django_db(transaction=True)
def test_server_answers_health_with_version(live_server_process):
    body = requests.get(f"{live_server_process.url}/api/v1/health", timeout=5).json()
    assert body["status"] == "ok"
    assert body["version"]
