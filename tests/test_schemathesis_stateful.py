"""schemathesis's stateful phase over the OpenAPI links (issue 8, the proving
ground): sequences of calls against a real uvicorn on 127.0.0.1 that follow the
document's links — an accepted order to reading, canceling and changing it, a
created API key to revoking it — with generated (valid and invalid) data, as a
normal user. Every answer must be documented and in its schema (errors in the
one error shape), never a server error.

The CI run is bounded (``STATEFUL_EXAMPLES`` scenarios, at most 25, a fixed
seed, a few steps each); ``-m fuzz_long`` runs the longer one
(``FUZZ_LONG_EXAMPLES``, default 500)."""

from __future__ import annotations

import os
import time
from decimal import Decimal

import pytest
import schemathesis
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, Phase, settings

from accounts.models import ApiKey
from accounts.services import api_key_create, user_create
from brokers.services import broker_account_create
from marketdata.services import instrument_upsert
from oms.models import Order
from tests.servers import run_uvicorn

pytestmark = [pytest.mark.server, pytest.mark.django_db(transaction=True)]

OPERATIONS = (
    "accounts_list",
    "accounts_orders_send",
    "orders_retrieve",
    "orders_cancel",
    "orders_change",
    "api_keys_create",
    "api_keys_revoke",
)
CI_EXAMPLES = int(os.environ.get("STATEFUL_EXAMPLES", "25"))
CI_BUDGET = 240.0  # seconds
RESTING = {"symbol": "AAPL", "order_type": "limit", "qty": "1", "price": "1.00"}


def _machine(base_url: str, key: str, account_id: int):
    document = SchemaGenerator().get_schema(request=None, public=True)
    schema = schemathesis.openapi.from_dict(document)
    schema.config.update(base_url=base_url)
    schema = schema.include(operation_id=list(OPERATIONS))
    base = schema.as_state_machine()

    class Machine(base):  # type: ignore[valid-type, misc]
        def before_call(self, case) -> None:
            # Orders go to the caller's paper account (any other id is only a 404),
            # and every other valid-data send is an order the venue accepts (a
            # generated symbol is never an instrument), so the links to the
            # order are followed with a live order. The choice depends on the
            # drawn case only (Hypothesis replays must draw the same way).
            operation_id = case.operation.definition.raw.get("operationId")
            if operation_id == "accounts_list":
                # Only the link's source here: its query is the stateless run's
                # (an empty choice, ?kind=, is read as no filter: a known open point).
                case.query = None
                return
            if operation_id != "accounts_orders_send":
                return
            case.path_parameters = {**(case.path_parameters or {}), "id": account_id}
            positive = case.meta is None or case.meta.generation.mode.value == "positive"
            if positive and isinstance(case.body, dict) and len(case.body) % 2 == 0:
                case.body = {**{k: v for k, v in case.body.items() if k in ("side", "strategy_id")}, **RESTING}

        def get_call_kwargs(self, case) -> dict:
            return {"headers": {"X-API-Key": key}, "timeout": 30}

        def validate_response(self, response, case, additional_checks=None, **kwargs) -> None:
            # Business 4xx answers to valid data are expected (a canceled order
            # cannot change); the auth checks are the authorization matrix's job.
            case.validate_response(
                response,
                excluded_checks=[
                    schemathesis.checks.positive_data_acceptance,
                    schemathesis.checks.ignored_auth,
                    schemathesis.checks.use_after_free,
                ],
                transport_kwargs=kwargs or None,
            )

    return Machine


def _world():
    user = user_create(email="stateful@example.com", password="fuzz-pass-123")
    instrument_upsert(symbol="AAPL", type="stock", tick_size=Decimal("0.01"), lot_size=Decimal(1))
    account = broker_account_create(owner=user, kind="paper", label="fuzz")
    key = api_key_create(user=user, name="fuzz", scope="trade", manage_keys=True).key
    return user, account, key


def _run(tmp_path, examples: int, budget: float) -> None:
    user, account, key = _world()
    with run_uvicorn(
        tmp_path, RUN_LOOPS_IN_PROCESS="false", SIMULATOR_ENABLED="false", THROTTLE_API_KEYS="100000/min", RISK_MAX_ORDERS_PER_SECOND="0"
    ) as server:
        machine = _machine(f"{server.url}", key, account.pk)
        started = time.monotonic()
        # derandomize: the scenarios are a fixed function of the document (a fixed seed).
        machine.run(
            settings=settings(
                max_examples=examples,
                stateful_step_count=6,
                deadline=None,
                derandomize=True,
                database=None,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
        )
        elapsed = time.monotonic() - started
    assert elapsed < budget, f"the stateful run took {elapsed:.0f}s"
    # The links were followed: orders were accepted, and keys created (then revoked).
    assert Order.objects.filter(account=account).exists(), "no order was accepted: the links were never reached"
    assert ApiKey.objects.filter(user=user).count() > 1, "no key was created"


def test_stateful_links_never_fail_and_match_the_document(tmp_path):
    _run(tmp_path, min(CI_EXAMPLES, 25), CI_BUDGET)


@pytest.mark.fuzz_long
def test_stateful_links_long_run(tmp_path):
    _run(tmp_path, int(os.environ.get("FUZZ_LONG_EXAMPLES", "500")), 3600.0)
