"""Staff admin for users and API keys. Every write goes through accounts.services.

API keys are shown without their secret hash, issued through ``api_key_create``
(the plaintext appears once, in the success message after the add form) and
changed afterwards only by revoking them.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.db import models
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.html import format_html

from accounts.models import ApiKey, User
from accounts.services import api_key_create, api_key_revoke, user_create, user_update


def _adopt(obj: models.Model, saved: models.Model) -> None:
    """Make the admin's unsaved form instance stand for the row a service saved,
    so the admin's log entry, messages and redirect name the real object."""
    for field in obj._meta.concrete_fields:
        setattr(obj, field.attname, getattr(saved, field.attname))
    obj._state.adding = False
    obj._state.db = saved._state.db


def _clean_unique_email(form: forms.ModelForm) -> str:
    # The model's unique check is case-sensitive; the services store emails lower-cased.
    email = form.cleaned_data["email"].strip().lower()
    if User.objects.filter(email__iexact=email).exclude(pk=form.instance.pk).exists():
        raise forms.ValidationError("A user with this email exists.")
    return email


class UserAddForm(AdminUserCreationForm):
    class Meta:
        model = User
        fields = ("email",)

    def clean_email(self) -> str:
        return _clean_unique_email(self)


class UserEditForm(UserChangeForm):
    class Meta:
        model = User
        fields = "__all__"

    def clean_email(self) -> str:
        return _clean_unique_email(self)


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    form = UserEditForm
    add_form = UserAddForm
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name")}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "usable_password", "password1", "password2")}),)
    readonly_fields = ("last_login", "date_joined")
    list_display = ("email", "first_name", "last_name", "is_staff", "is_active", "date_joined")
    list_filter = ("is_staff", "is_superuser", "is_active", "groups")
    search_fields = ("email", "first_name", "last_name")
    ordering = ("email",)

    def save_form(self, request: HttpRequest, form: forms.ModelForm, change: bool) -> Any:
        # The add form would hash the password once more only to be thrown away.
        return form.save(commit=False) if change else form.instance

    def save_model(self, request: HttpRequest, obj: User, form: forms.ModelForm, change: bool) -> None:
        if change:
            changes = {name: form.cleaned_data[name] for name in form.changed_data if name not in ("groups", "user_permissions")}
            _adopt(obj, user_update(user=obj, **changes))
            return
        usable = form.cleaned_data.get("set_usable_password", True)
        created = user_create(email=form.cleaned_data["email"], password=form.cleaned_data["password1"] if usable else None)
        _adopt(obj, created)

    def save_related(self, request: HttpRequest, form: forms.ModelForm, formsets: Any, change: bool) -> None:
        if change:  # groups and permissions: Django's own m2m tables
            super().save_related(request, form, formsets, change)


class ApiKeyAddForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ("user", "name", "scope", "manage_keys", "expires_at")

    def clean_expires_at(self) -> Any:
        expires_at = self.cleaned_data.get("expires_at")
        if expires_at is not None and expires_at <= timezone.now():
            raise forms.ValidationError("Must be in the future.")
        return expires_at


class ApiKeyStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("active", "Active"), ("revoked", "Revoked"), ("expired", "Expired")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> QuerySet[ApiKey]:
        now = timezone.now()
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True).filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        if self.value() == "expired":
            return queryset.filter(revoked_at__isnull=True, expires_at__lte=now)
        return queryset


_API_KEY_DETAIL_FIELDS = (
    "user",
    "name",
    "prefix",
    "scope",
    "manage_keys",
    "parent",
    "status",
    "created_at",
    "expires_at",
    "revoked_at",
    "last_used_at",
)


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    form = ApiKeyAddForm
    list_display = ("name", "user", "prefix", "scope", "status", "created_at", "expires_at", "last_used_at")
    list_filter = (ApiKeyStatusFilter, "scope", "created_at")
    search_fields = ("name", "prefix", "user__email")
    list_select_related = ("user",)
    autocomplete_fields = ("user",)
    date_hierarchy = "created_at"
    actions = ("revoke_selected",)

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> Any:
        return ApiKeyAddForm.Meta.fields if obj is None else _API_KEY_DETAIL_FIELDS

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> Any:
        # Keys are never edited after issue: revoke and issue a new one.
        return () if obj is None else _API_KEY_DETAIL_FIELDS

    def get_actions(self, request: HttpRequest) -> Any:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # revoke, keeping the audit trail
        return actions

    @admin.display(description="status")
    def status(self, obj: ApiKey) -> str:
        if obj.is_revoked:
            return "revoked"
        return "expired" if obj.is_expired() else "active"

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None) -> HttpResponse:
        extra_context = {**(extra_context or {}), "show_save": False, "show_save_and_continue": False, "show_save_and_add_another": False}
        return super().change_view(request, object_id, form_url, extra_context)

    def save_model(self, request: HttpRequest, obj: ApiKey, form: forms.ModelForm, change: bool) -> None:
        if change:
            return  # nothing is editable; a stray POST must not write the row
        data = form.cleaned_data
        issued = api_key_create(
            user=data["user"],
            name=data["name"],
            scope=data["scope"],
            manage_keys=data.get("manage_keys", False),
            expires_at=data.get("expires_at"),
        )
        _adopt(obj, issued.api_key)
        obj._issued_key = issued.key  # type: ignore[attr-defined]  # read once by response_add

    def response_add(self, request: HttpRequest, obj: ApiKey, post_url_continue: str | None = None) -> HttpResponse:
        key = obj.__dict__.pop("_issued_key", None)
        if key:
            messages.success(
                request,
                format_html("API key issued: <code>{}</code> Copy it now: it is shown only this once and cannot be recovered.", key),
            )
        return super().response_add(request, obj, post_url_continue)

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        revoked = 0
        for api_key in queryset.filter(revoked_at__isnull=True):
            api_key_revoke(api_key=api_key)
            revoked += 1
        self.message_user(request, f"Revoked {revoked} API key(s).", messages.SUCCESS)
