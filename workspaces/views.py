from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from workspaces.dashboard import MODULES, RESOLUTIONS, dashboard_config


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """The trading dashboard: a shell the page's modules fill from the API and the WebSocket."""
    return render(
        request,
        "workspaces/dashboard.html",
        {"config": dashboard_config(user=request.user), "resolutions": RESOLUTIONS, "modules": MODULES},  # type: ignore[arg-type]
    )
