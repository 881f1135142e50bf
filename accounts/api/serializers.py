from __future__ import annotations

import copy
from typing import Any, ClassVar

from rest_framework import serializers

from accounts.models import ApiKey, ApiKeyScope, User
from core.serializers import StrictSerializer


class MeSerializer(serializers.ModelSerializer):
    # Answered on every GET /me: the fields DRF derives from the model are built
    # once per process and copied per use (as DRF copies declared fields),
    # instead of being introspected from the model on every request.
    _model_fields: ClassVar[dict[str, Any] | None] = None

    def get_fields(self) -> dict[str, Any]:
        cls = type(self)
        if cls._model_fields is None:
            cls._model_fields = super().get_fields()
        return copy.deepcopy(cls._model_fields)

    class Meta:
        model = User
        fields = ["id", "email", "first_name", "last_name", "is_staff", "date_joined"]
        read_only_fields = fields


class ApiKeySerializer(serializers.ModelSerializer):
    scopes = serializers.SerializerMethodField()
    status = serializers.SerializerMethodField()

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "name",
            "prefix",
            "scope",
            "scopes",
            "status",
            "parent_id",
            "created_at",
            "expires_at",
            "revoked_at",
            "last_used_at",
        ]
        read_only_fields = fields

    def get_scopes(self, obj: ApiKey) -> list[str]:
        return obj.scopes

    def get_status(self, obj: ApiKey) -> str:
        if obj.is_revoked:
            return "revoked"
        if obj.is_expired():
            return "expired"
        return "active"


KEYS_SCOPE = "keys"


class ApiKeyCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100)
    scope = serializers.ChoiceField(choices=ApiKeyScope.choices, required=False)
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=[*ApiKeyScope.values, KEYS_SCOPE]),
        required=False,
        allow_empty=False,
        help_text="read, trade (includes read) and keys (create and revoke keys no wider than this one).",
    )
    expires_at = serializers.DateTimeField(required=False, allow_null=True)

    def validate(self, attrs: dict) -> dict:
        scopes = attrs.pop("scopes", None)
        if scopes is not None and "scope" in attrs:
            raise serializers.ValidationError({"scopes": ["Give scope or scopes, not both."]})
        if scopes is not None:
            attrs["scope"] = ApiKeyScope.TRADE if ApiKeyScope.TRADE in scopes else ApiKeyScope.READ
            attrs["manage_keys"] = KEYS_SCOPE in scopes
        return attrs


class ApiKeyCreatedSerializer(ApiKeySerializer):
    key = serializers.CharField(help_text="The secret key. Shown once; store it now.")

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "key"]
        read_only_fields = fields
