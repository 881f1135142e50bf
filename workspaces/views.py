from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from workspaces.selectors import account_rows_for_user, active_api_key_count


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "workspaces/home.html",
        {"accounts": account_rows_for_user(user=request.user), "api_key_count": active_api_key_count(user=request.user)},  # type: ignore[arg-type]
    )
