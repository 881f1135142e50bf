"""Broker failures reach the client in the one error shape, with Retry-After
where waiting helps, and never with a secret."""

from __future__ import annotations

import pytest

from brokers.base import BrokerAuthExpired, BrokerError, BrokerRateLimited, BrokerRejected, BrokerTimeout, BrokerUnavailable
from brokers.errors import domain_error_for
from brokers.locks import LockNotAcquired
from brokers.tokens import TokenIssueTooSoon
from core.exceptions import exception_handler

SECRET = "appsecret-0123456789abcdef"


@pytest.mark.parametrize(
    ("error", "status", "code", "retry_after"),
    [
        (TokenIssueTooSoon("one a minute", retry_after=41.2), 503, "broker_busy", "42"),
        (BrokerRateLimited("EGW00201", retry_after=0.2), 503, "broker_busy", "1"),
        (LockNotAcquired("another caller"), 503, "broker_busy", "1"),
        (BrokerUnavailable("connection refused"), 503, "broker_unavailable", None),
        (BrokerTimeout("read timed out"), 504, "broker_unavailable", None),
        (BrokerRejected("APBK0919 not enough cash"), 422, "broker_rejected", None),
        (BrokerAuthExpired("EGW00103 invalid app key"), 409, "broker_auth", None),
        (BrokerError("something else"), 503, "broker_unavailable", None),
    ],
)
def test_each_broker_failure_has_its_status_code_and_retry_after(error, status, code, retry_after):
    response = exception_handler(domain_error_for(error), {})
    assert response is not None and response.status_code == status
    assert response.data["error"]["code"] == code
    assert response.get("Retry-After") == retry_after
    assert error.message in response.data["error"]["message"]  # the broker's reason is kept


def test_a_secret_in_a_broker_message_is_masked():
    for error in (
        BrokerRejected(f'refused {{"appsecret": "{SECRET}"}}'),
        BrokerAuthExpired(f"bad appsecret={SECRET!r}"),
        BrokerUnavailable(f"Authorization: Bearer {SECRET}"),
    ):
        message = domain_error_for(error).message
        assert SECRET not in message and "***" in message
