"""Strict wire fields of the command specs: each value is taken exactly as a
client means it, or refused (422), never coerced and never left to fail in
the database.

* ids: JSON integers 1..2^63-1 (the bigint primary keys): ``1e30`` (a JSON
  float), ``"7"``, ``true`` and ``2**63`` are refused, on SQLite as on
  PostgreSQL;
* decimals: plain ASCII decimal strings (``"10"``, ``"0.001"``) that fit the
  column (``QTY``: 18 digits before the point, 10 after); a JSON integer is
  taken as written; a JSON number with a fraction or an exponent arrives as a
  binary float, which holds any decimal of up to 15 significant digits
  exactly (its shortest representation is the decimal the client wrote), so
  such a number is taken and a longer one refused (send it as a string).
  ``"١"`` (Arabic-Indic one), ``" 1"``, ``"1e28"``, ``"NaN"`` are refused;
* text: JSON strings within the column's length, without control characters
  (NUL included) or lone surrogates; never trimmed;
* booleans: ``true`` or ``false`` only; choices: one of the exact strings.
"""

from __future__ import annotations

import math
import re
import secrets
from decimal import Decimal
from typing import Any

from django.core.validators import RegexValidator
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.decimals import decimal_str
from oms.models import QTY

#: The largest id a bigint column holds (PostgreSQL bigint, SQLite integer).
MAX_ID = 2**63 - 1
#: Significant digits of a decimal that a binary64 float always holds exactly.
FLOAT_EXACT_DIGITS = 15
#: Decimal columns of orders and deals.
MAX_DIGITS: int = QTY["max_digits"]
DECIMAL_PLACES: int = QTY["decimal_places"]

_PLAIN_DECIMAL = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
# C0 and C1 control characters (NUL included) and UTF-16 surrogates, which a
# JSON string can carry as "\ud800" but no database text column can store.
_FORBIDDEN_TEXT = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")

#: The one client order id rule: short enough for every broker's client id field.
CLIENT_ORDER_ID = re.compile(r"[A-Za-z0-9_-]{1,36}")
CLIENT_ORDER_ID_HELP = "1-36 characters of A-Z, a-z, 0-9, _ and -."


def is_client_order_id(value: object) -> bool:
    return isinstance(value, str) and CLIENT_ORDER_ID.fullmatch(value) is not None


def new_client_order_id() -> str:
    # 20 characters: fits every broker's client id / tag field.
    return "tt" + secrets.token_hex(9)


class IdField(serializers.IntegerField):
    """A database id: a JSON integer within the bigint range."""

    default_error_messages = {"invalid": "An integer id is required."}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(min_value=1, max_value=MAX_ID, **kwargs)

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        if not 1 <= data <= MAX_ID:
            self.fail("max_value" if data > 0 else "min_value", max_value=MAX_ID, min_value=1)
        return data


@extend_schema_field(
    {
        "type": "string",
        "pattern": rf"^-?[0-9]{{1,{MAX_DIGITS - DECIMAL_PLACES}}}(\.[0-9]{{1,{DECIMAL_PLACES}}})?$",
        "example": "10.5",
        "description": (
            "A decimal as a string (recommended). A JSON integer is accepted too, and a JSON number with a fraction"
            " when it has at most 15 significant digits (a longer one may have been rounded on the way)."
        ),
    }
)
class PlainDecimalField(serializers.Field):
    """A decimal for a ``QTY`` column (see the module docstring)."""

    default_error_messages = {
        "invalid": 'A plain decimal string is required, such as "10.5" (ASCII digits, no exponent, no spaces).',
        "float": 'Send this decimal as a string ("0.1"): a JSON number of more than 15 significant digits may be rounded on the way.',
        "max_whole_digits": "At most {max_whole_digits} digits before the decimal point.",
        "max_decimal_places": "At most {max_decimal_places} decimal places.",
    }

    def __init__(self, **kwargs: Any) -> None:
        self.max_whole_digits = MAX_DIGITS - DECIMAL_PLACES
        self.max_decimal_places = DECIMAL_PLACES
        kwargs["help_text"] = " ".join(["A decimal as a string.", str(kwargs.get("help_text") or "")]).strip()
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> Decimal:
        if isinstance(data, bool):
            self.fail("invalid")
        if isinstance(data, float):
            data = self._exact_float(data)
        if isinstance(data, int):
            text = str(data) if abs(data) < 10**40 else "9" * 41  # refused below, without a huge str()
        elif isinstance(data, str) and len(data) <= 64:
            text = data
        else:
            self.fail("invalid")
        if _PLAIN_DECIMAL.fullmatch(text) is None:
            self.fail("invalid")
        whole, _, fraction = text.lstrip("-").partition(".")
        if len(whole.lstrip("0")) > self.max_whole_digits:
            self.fail("max_whole_digits", max_whole_digits=self.max_whole_digits)
        if len(fraction.rstrip("0")) > self.max_decimal_places:
            self.fail("max_decimal_places", max_decimal_places=self.max_decimal_places)
        return Decimal(text)

    def _exact_float(self, data: float) -> str:
        """The decimal a client wrote as a JSON number, when a float holds it exactly."""
        if not math.isfinite(data):
            self.fail("invalid")
        number = Decimal(repr(data))  # the shortest text that reads back as this float
        if len(number.normalize().as_tuple().digits) > FLOAT_EXACT_DIGITS or abs(number) >= 10**MAX_DIGITS:
            self.fail("float")
        return format(number, "f")

    def to_representation(self, value: Any) -> str | None:
        return decimal_str(value)


class TextField(serializers.CharField):
    """Text for a varchar column: a JSON string, at most ``max_length``
    characters, without control characters or lone surrogates, kept as sent."""

    default_error_messages = {
        "invalid": "A string is required.",
        "forbidden_characters": "Control characters (NUL included) and lone surrogates are not allowed.",
    }

    def __init__(self, *, max_length: int, accept_int: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(max_length=max_length, **kwargs)
        # Strategy ids were taken as JSON integers too: clients send them so.
        self.accept_int = accept_int

    def to_internal_value(self, data: Any) -> str:
        if self.accept_int and isinstance(data, int) and not isinstance(data, bool) and abs(data) <= MAX_ID:
            data = str(data)
        if not isinstance(data, str):
            self.fail("invalid")
        if self.max_length is not None and len(data) > self.max_length:
            self.fail("max_length", max_length=self.max_length)
        if _FORBIDDEN_TEXT.search(data):
            self.fail("forbidden_characters")
        return data


class ClientOrderIdField(TextField):
    """A client order id as the client names a new order (the one rule)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("help_text", f"Unique per account; generated when absent. {CLIENT_ORDER_ID_HELP}")
        super().__init__(max_length=36, **kwargs)
        self.validators.append(RegexValidator(rf"^{CLIENT_ORDER_ID.pattern}\Z", message=CLIENT_ORDER_ID_HELP))


class BooleanField(serializers.BooleanField):
    """``true`` or ``false``; not ``"true"``, ``1`` or ``"yes"``."""

    def to_internal_value(self, data: Any) -> bool:
        if data is True or data is False:
            return data
        self.fail("invalid", input=str(data)[:40])
        raise AssertionError  # fail() raises


class ChoiceField(serializers.ChoiceField):
    """One of the exact strings (no ``str()`` of other JSON types)."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str) or data not in self.choice_strings_to_values:
            self.fail("invalid_choice", input=str(data)[:40])
        return self.choice_strings_to_values[data]


class RequestIdField(serializers.Field):
    """A client's request id, echoed in the result: a short string or an integer."""

    default_error_messages = {"invalid": "A string of at most 128 characters (or an integer) is required."}

    def to_internal_value(self, data: Any) -> str | int:
        if isinstance(data, int) and not isinstance(data, bool) and abs(data) <= MAX_ID:
            return data
        if isinstance(data, str) and len(data) <= 128 and not _FORBIDDEN_TEXT.search(data):
            return data
        self.fail("invalid")
        raise AssertionError

    def to_representation(self, value: Any) -> Any:
        return value


extend_schema_field({"oneOf": [{"type": "string", "maxLength": 128}, {"type": "integer"}]})(RequestIdField)
