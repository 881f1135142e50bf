from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from brokers.models import REQUIRED_CREDENTIALS, AccountStatus, BrokerAccount, BrokerKind, Environment, PositionMode
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

    @extend_schema_field(serializers.ChoiceField(choices=AccountStatus.choices))
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
