"""Forms of the account and key pages. They only check the shape of what was
typed; the services decide (their field errors are shown in place)."""

from __future__ import annotations

from django import forms

from accounts.models import ApiKeyScope
from brokers.models import PositionMode
from core.exceptions import DomainError


class PaperAccountForm(forms.Form):
    label = forms.CharField(max_length=100, label="Label")
    base_currency = forms.CharField(max_length=10, initial="USD", label="Base currency")
    position_mode = forms.ChoiceField(choices=PositionMode.choices, initial=PositionMode.NETTING, label="Position mode")


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=100, label="Name")
    scope = forms.ChoiceField(choices=ApiKeyScope.choices, initial=ApiKeyScope.READ, label="Scope", help_text="trade includes read.")
    manage_keys = forms.BooleanField(required=False, label="May create and revoke keys (keys scope)")
    expires_at = forms.DateTimeField(
        required=False, label="Expires at (optional)", widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )


class TimezoneForm(forms.Form):
    timezone = forms.CharField(max_length=64, label="Time zone")


def add_service_errors(form: forms.Form, error: DomainError) -> None:
    """A service's refusal shown on the form: each field's messages on that
    field (or the form), the message itself when it names no field."""
    if not error.fields:
        form.add_error(None, error.message)
        return
    for name, messages in error.fields.items():
        for message in messages if isinstance(messages, list) else [messages]:
            form.add_error(name if name in form.fields else None, str(message))
