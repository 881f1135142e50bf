from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from brokers.models import (
    ACCOUNT_READ_STATUS_CHOICES,
    REQUIRED_CREDENTIALS,
    BrokerAccount,
    BrokerKind,
    Environment,
    PositionMode,
)
from brokers.paper.models import PaperLedgerEntry
from brokers.services import broker_account_status
from core.decimals import decimal_str
from core.serializers import StrictSerializer


class BrokerAccountSerializer(serializers.ModelSerializer):
    has_credentials = serializers.BooleanField(read_only=True, help_text="Every required credential is set.")
    required_credentials = serializers.SerializerMethodField()
    missing_credentials = serializers.ListField(child=serializers.CharField(), read_only=True)
    status = serializers.SerializerMethodField()

    class Meta:
        model = BrokerAccount
        fields = [
            "id",
            "kind",
            "label",
            "environment",
            "position_mode",
            "base_currency",
            "broker_account_number",
            "broker_product_code",
            "broker_user_id",
            "exchange_id",
            "has_credentials",
            "required_credentials",
            "missing_credentials",
            "status",
            "trading_enabled",
            "last_synced_at",
            "last_error",
            "last_error_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_required_credentials(self, obj: BrokerAccount) -> list[str]:
        return list(REQUIRED_CREDENTIALS.get(obj.kind, ()))

    @extend_schema_field(serializers.ChoiceField(choices=ACCOUNT_READ_STATUS_CHOICES))
    def get_status(self, obj: BrokerAccount) -> str:
        return broker_account_status(obj)


class _AccountFieldsMixin(serializers.Serializer):
    label = serializers.CharField(max_length=100)
    environment = serializers.ChoiceField(choices=Environment.choices)
    position_mode = serializers.ChoiceField(choices=PositionMode.choices)
    base_currency = serializers.RegexField(r"^[A-Za-z]{2,10}$", max_length=10)
    broker_account_number = serializers.CharField(max_length=32, allow_blank=True)
    broker_product_code = serializers.CharField(max_length=8, allow_blank=True)
    broker_user_id = serializers.CharField(max_length=64, allow_blank=True)
    exchange_id = serializers.CharField(max_length=32, allow_blank=True)
    credentials = serializers.DictField(
        child=serializers.CharField(allow_blank=False),
        write_only=True,
        help_text="Broker secrets (write-only; never returned).",
    )


class BrokerAccountCreateSerializer(StrictSerializer, _AccountFieldsMixin):
    kind = serializers.ChoiceField(choices=BrokerKind.choices, default=BrokerKind.PAPER)

    def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        for name, field in self.fields.items():
            if name != "label":
                field.required = False


class BrokerAccountUpdateSerializer(StrictSerializer, _AccountFieldsMixin):
    def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            field.required = False


class PlainDecimal(serializers.DecimalField):
    """A decimal as a string without the column's padding (``"-50.4"``, never ``1E+2``)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_digits=None, decimal_places=None, read_only=True, **kwargs)

    def to_representation(self, value: Any) -> str | None:
        return decimal_str(value)


class LedgerEntrySerializer(serializers.ModelSerializer):
    """One change of one currency's balance of a paper account."""

    account_id = serializers.IntegerField(read_only=True)
    amount = PlainDecimal(help_text="Signed, in `currency`.")
    rate = PlainDecimal(
        allow_null=True, help_text="Value of one unit of `currency` in the account's base currency when booked (null: none known)."
    )
    trade_id = serializers.CharField(
        read_only=True, help_text="The venue's fill this entry belongs to (empty for deposits and withdrawals)."
    )

    class Meta:
        model = PaperLedgerEntry
        fields = ["id", "account_id", "currency", "amount", "kind", "rate", "trade_id", "note", "created_at"]
        read_only_fields = fields


class TokenStateSerializer(serializers.Serializer):
    """One broker token of the account's credential: its state, never its value."""

    name = serializers.CharField(read_only=True, help_text="access_token, approval_key, ...")
    present = serializers.BooleanField(read_only=True)
    valid = serializers.BooleanField(read_only=True, help_text="Present and not expired.")
    issued_at = serializers.DateTimeField(read_only=True, allow_null=True)
    expires_at = serializers.DateTimeField(read_only=True, allow_null=True)
    last_attempt_at = serializers.DateTimeField(
        read_only=True, allow_null=True, help_text="Last issue attempt (the broker's rate rule counts these)."
    )
    last_error = serializers.CharField(read_only=True)


class FeedStateSerializer(serializers.Serializer):
    connected = serializers.BooleanField(read_only=True)
    last_message_at = serializers.DateTimeField(read_only=True, allow_null=True)
    subscriptions = serializers.ListField(child=serializers.CharField(), read_only=True)
    notices = serializers.CharField(read_only=True, help_text="How fills arrive: the feed's notices, or polling (e.g. no HTS id).")
    error = serializers.CharField(read_only=True)


class SyncStateSerializer(serializers.Serializer):
    last_synced_at = serializers.DateTimeField(read_only=True, allow_null=True, help_text="Last successful sync.")
    initial_synced_at = serializers.DateTimeField(
        read_only=True, allow_null=True, help_text="When the first sync booked what the broker held (null: not yet)."
    )
    duration = serializers.FloatField(read_only=True, allow_null=True, help_text="Seconds the last sync took.")
    error = serializers.CharField(read_only=True, help_text="The last sync's failure (empty when it succeeded).")
    notes = serializers.ListField(child=serializers.CharField(), read_only=True, help_text="Drift and bookings the last sync saw.")


class AccountStatusSerializer(serializers.Serializer):
    """Connection health of an account (``brokers.connection.broker_account_connection``)."""

    id = serializers.IntegerField(read_only=True)
    kind = serializers.ChoiceField(choices=BrokerKind.choices, read_only=True)
    environment = serializers.ChoiceField(choices=Environment.choices, read_only=True)
    status = serializers.ChoiceField(choices=ACCOUNT_READ_STATUS_CHOICES, read_only=True)
    trading_enabled = serializers.BooleanField(read_only=True)
    tokens = TokenStateSerializer(many=True, read_only=True, help_text="Empty for a broker without tokens.")
    feed = FeedStateSerializer(read_only=True, allow_null=True, help_text="Null: no live feed runs for the account.")
    sync = SyncStateSerializer(read_only=True)
    last_error = serializers.CharField(read_only=True)
    last_error_at = serializers.DateTimeField(read_only=True, allow_null=True)
