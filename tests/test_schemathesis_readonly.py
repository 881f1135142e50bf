"""Quick schemathesis pass over the read-only operations (issue 8, part 5):
generated queries and paths, as a normal user; no server error, and every
answer conforms to the project's own OpenAPI document. The full fuzzing run
(every operation, stateful links) is a separate, longer job."""

from __future__ import annotations

from decimal import Decimal

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, given, settings

from accounts.services import api_key_create, user_create
from marketdata.services import instrument_upsert

# transaction=True: the WSGI calls close the connection after each request, as a server does.
pytestmark = pytest.mark.django_db(transaction=True)

READ_ONLY = r"^/api/v1/(symbols|quotes|history-bars|fo/|futures/|me|api-keys|accounts|workspaces|watchlists|oms/(deals|orders|positions)|orders/|version|health$)"


@pytest.fixture
def reader_key(db) -> str:
    user = user_create(email="fuzz@example.com", password="fuzz-pass-123")
    instrument_upsert(symbol="AAPL", type="stock", tick_size=Decimal("0.01"), lot_size=Decimal(1))
    return api_key_create(user=user, name="fuzz", scope="read").key


def test_read_only_operations_never_fail_and_match_the_document(reader_key):
    document = SchemaGenerator().get_schema(request=None, public=True)
    loaded = schemathesis.openapi.from_dict(document).include(method="GET", path_regex=READ_ONLY)
    app = get_wsgi_application()
    operations = [result.ok() for result in loaded.get_all_operations()]
    assert len(operations) >= 10  # the filter still finds the read-only operations

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=10, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
        def check(case) -> None:
            case.headers = {**(case.headers or {}), "X-API-Key": reader_key}
            # Business 4xx answers are expected; the auth checks are the authorization matrix's job.
            case.call_and_validate(
                app=app, excluded_checks=[schemathesis.checks.positive_data_acceptance, schemathesis.checks.ignored_auth]
            )

        check()
