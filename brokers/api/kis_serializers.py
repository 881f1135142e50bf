"""Wire shapes of the upstream KIS terminal's endpoints (``/auth/kis/...``)."""

from __future__ import annotations

from rest_framework import serializers

from brokers.models import Environment
from core.serializers import StrictSerializer
from core.urls import MAX_ID


class KisAccountQuerySerializer(StrictSerializer):
    account_id = serializers.IntegerField(
        min_value=1, max_value=MAX_ID, required=False, help_text="Which KIS account; needed when you have none or several."
    )


class KisTokenStateSerializer(serializers.Serializer):
    """One token's state, never its value."""

    present = serializers.BooleanField(help_text="A token is stored.")
    valid = serializers.BooleanField(help_text="Stored and not within the refresh margin of its expiry.")
    issued_at = serializers.DateTimeField(allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True)
    last_attempt_at = serializers.DateTimeField(allow_null=True, help_text="The last issue asked of KIS (the one-a-minute rule).")
    last_error = serializers.CharField(allow_blank=True)


class KisStatusSerializer(serializers.Serializer):
    account_id = serializers.IntegerField()
    environment = serializers.ChoiceField(choices=Environment.choices)
    configured = serializers.BooleanField(help_text="Credentials set, account number and product code well formed.")
    problem = serializers.CharField(allow_blank=True, help_text="What keeps the account from talking to KIS, if anything.")
    missing_credentials = serializers.ListField(child=serializers.CharField())
    fill_notices = serializers.ChoiceField(
        choices=["websocket", "polling"], help_text="websocket with an HTS id (broker_user_id); else the daily-fills query only."
    )
    access_token = KisTokenStateSerializer(allow_null=True, help_text="Null until the account is configured.")
    approval_key = KisTokenStateSerializer(allow_null=True, help_text="Null until the account is configured.")


class EmptyBodySerializer(StrictSerializer):
    """``{}`` or no body."""
