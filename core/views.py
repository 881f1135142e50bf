from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django_prometheus.exports import ExportToDjangoView
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.exceptions import error_body, json_error_response
from core.health import pipeline_degraded, pipeline_health, readiness

API_VERSIONS = ["v1"]


def _version_body() -> dict:
    return {"version": settings.VERSION, "api_version": API_VERSIONS[-1], "git_revision": settings.GIT_REVISION or None}


class PublicView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    # Throttling reads the cache: with Redis down, health must still answer (503, not 500).
    throttle_classes: list = []


class HealthView(PublicView):
    """The deployment's health: ``degraded`` (still 200) when accepted orders
    would not be sent, naming what is missing. A load balancer reads
    ``/health/ready`` instead, which is only about this process."""

    @extend_schema(
        responses=inline_serializer(
            "Health",
            {
                "status": serializers.ChoiceField(choices=["ok", "degraded"]),
                "version": serializers.CharField(),
                "git_revision": serializers.CharField(allow_null=True),
                "degraded": serializers.ListField(child=serializers.CharField(), help_text="The checks that are not ok."),
                "checks": serializers.DictField(
                    help_text="workers: status (ok, missing, unknown), alive, missing workers with their last heartbeat age; "
                    "order_pipeline: unsent_orders, oldest_unsent_order_age_seconds."
                ),
            },
        ),
        operation_id="health",
    )
    def get(self, request: Request) -> Response:
        checks = pipeline_health()
        degraded = pipeline_degraded(checks)
        return Response({"status": "degraded" if degraded else "ok", **_version_body(), "degraded": degraded, "checks": checks})


class LiveView(PublicView):
    @extend_schema(responses=inline_serializer("Live", {"status": serializers.CharField()}), operation_id="health_live")
    def get(self, request: Request) -> Response:
        return Response({"status": "ok"})


class ReadyView(PublicView):
    @extend_schema(
        responses={
            200: inline_serializer("Ready", {"status": serializers.CharField(), "checks": serializers.DictField()}),
            503: inline_serializer("NotReady", {"error": serializers.DictField(), "checks": serializers.DictField()}),
        },
        operation_id="health_ready",
    )
    def get(self, request: Request) -> Response:
        checks = readiness()
        failing = sorted(name for name, result in checks.items() if result["status"] != "ok")
        if failing:
            body = error_body("not_ready", f"Not ready: {', '.join(failing)}.", {name: [checks[name]["detail"]] for name in failing})
            return Response({**body, "status": "fail", "failing": failing, "checks": checks}, status=503)
        return Response({"status": "ok", "checks": checks})


class HealthzView(ReadyView):
    """``/healthz`` of the CCXT OMS: its users check that the started stack
    (database, cache, channel layer, task broker) answers, so it is readiness
    (200, or 503 naming the failing checks) plus the version."""

    @extend_schema(
        responses={
            200: inline_serializer(
                "Healthz",
                {
                    "status": serializers.CharField(),
                    "checks": serializers.DictField(),
                    "version": serializers.CharField(),
                    "git_revision": serializers.CharField(allow_null=True),
                },
            ),
            503: inline_serializer("HealthzFailing", {"error": serializers.DictField(), "checks": serializers.DictField()}),
        },
        operation_id="healthz",
    )
    def get(self, request: Request) -> Response:
        response = super().get(request)
        response.data.update(_version_body())
        return response


class VersionView(PublicView):
    @extend_schema(
        responses=inline_serializer(
            "Version",
            {
                "version": serializers.CharField(),
                "api_version": serializers.CharField(),
                "git_revision": serializers.CharField(allow_null=True),
            },
        ),
        operation_id="version",
    )
    def get(self, request: Request) -> Response:
        return Response(_version_body())


class VersionsView(PublicView):
    @extend_schema(
        responses=inline_serializer("Versions", {"versions": serializers.ListField(), "current": serializers.CharField()}),
        operation_id="versions",
    )
    def get(self, request: Request) -> Response:
        return Response({"versions": API_VERSIONS, "current": API_VERSIONS[-1], "server_version": settings.VERSION})


def _metrics_allowed(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    if token and request.headers.get("Authorization") == f"Bearer {token}":
        return True
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.is_staff:
        return True
    remote = request.META.get("REMOTE_ADDR", "")
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return False
    return any(address == ipaddress.ip_address(allowed) for allowed in settings.METRICS_ALLOWED_IPS)


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus metrics: for a bearer token, staff, or an allowed address."""
    if not _metrics_allowed(request):
        return json_error_response(403, "permission_denied", "Metrics are internal.")
    return ExportToDjangoView(request)


@csrf_exempt  # any method on an unknown path is a JSON 404, never the CSRF page
def api_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return json_error_response(404, "not_found", "Not found.")
