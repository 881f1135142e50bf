from __future__ import annotations

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from accounts.models import ApiKey


class ApiKeyScopePermission(BasePermission):
    """A ``read``-scope key may only read: 403 on POST, PUT, PATCH and DELETE,
    except the POST of a view whose POST only reads (``post_reads = True``:
    a query too long for a URL, as ``POST /datafeed/quotes``)."""

    message = "This API key has the read scope; trading and changes need the trade scope."

    def has_permission(self, request: Request, view: Any) -> bool:
        if request.method == "POST" and getattr(view, "post_reads", False):
            return True
        if isinstance(request.auth, ApiKey) and request.method not in SAFE_METHODS:
            return request.auth.can_trade
        return True


class ApiKeyManagementPermission(BasePermission):
    """Creating and revoking keys: the dashboard session, or a key with the
    ``keys`` scope (whatever its read/trade scope). Listing needs neither."""

    message = "Creating and revoking API keys needs the dashboard session or a key with the keys scope."

    def has_permission(self, request: Request, view: Any) -> bool:
        if isinstance(request.auth, ApiKey) and request.method not in SAFE_METHODS:
            return request.auth.manage_keys
        return True
