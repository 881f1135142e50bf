"""Workspaces, watchlists and the user's settings: the caller's own only
(another user's id answers 404). HTTP in, service call, HTTP out."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.pagination import CursorPagination
from workspaces import services
from workspaces.api.serializers import (
    UserSettingsPatchSerializer,
    UserSettingsSerializer,
    WatchlistCreateSerializer,
    WatchlistItemSerializer,
    WatchlistPatchSerializer,
    WatchlistReorderSerializer,
    WatchlistSerializer,
    WorkspaceCreateSerializer,
    WorkspacePatchSerializer,
    WorkspacePutSerializer,
    WorkspaceSerializer,
)
from workspaces.models import Watchlist, Workspace
from workspaces.selectors import watchlist_with_symbols, watchlists_for_user, workspaces_for_user


class OldestFirst(CursorPagination):
    ordering = "id"


def _valid(serializer_class: type, request: Request) -> dict[str, Any]:
    data = serializer_class(data=request.data)
    data.is_valid(raise_exception=True)
    return dict(data.validated_data)


def _watchlist_body(watchlist: Watchlist) -> dict[str, Any]:
    return WatchlistSerializer(watchlist_with_symbols(watchlist_id=watchlist.pk)).data


class WorkspaceListCreateView(generics.ListAPIView):
    serializer_class = WorkspaceSerializer
    pagination_class = OldestFirst

    def get_queryset(self):  # type: ignore[no-untyped-def]
        if getattr(self, "swagger_fake_view", False):  # the schema generator has no user
            return Workspace.objects.none()
        return workspaces_for_user(user=self.request.user)  # type: ignore[arg-type]

    @extend_schema(request=WorkspaceCreateSerializer, responses={201: WorkspaceSerializer}, operation_id="workspaces_create")
    def post(self, request: Request) -> Response:
        workspace = services.workspace_create(owner=request.user, **_valid(WorkspaceCreateSerializer, request))  # type: ignore[arg-type]
        return Response(WorkspaceSerializer(workspace).data, status=status.HTTP_201_CREATED)


class WorkspaceDefaultView(APIView):
    @extend_schema(responses=WorkspaceSerializer, operation_id="workspaces_default")
    def get(self, request: Request) -> Response:
        """The caller's default workspace, created (with a watchlist) when missing."""
        return Response(WorkspaceSerializer(services.workspace_get_default(user=request.user)).data)  # type: ignore[arg-type]


class WorkspaceDetailView(APIView):
    def _get(self, request: Request, pk: int) -> Workspace:
        return services.workspace_get_for_user(user=request.user, workspace_id=pk)  # type: ignore[arg-type]

    @extend_schema(responses=WorkspaceSerializer, operation_id="workspaces_retrieve")
    def get(self, request: Request, pk: int) -> Response:
        return Response(WorkspaceSerializer(self._get(request, pk)).data)

    @extend_schema(request=WorkspacePatchSerializer, responses=WorkspaceSerializer, operation_id="workspaces_partial_update")
    def patch(self, request: Request, pk: int) -> Response:
        workspace = self._get(request, pk)
        workspace = services.workspace_update(workspace=workspace, **_valid(WorkspacePatchSerializer, request))
        return Response(WorkspaceSerializer(workspace).data)

    @extend_schema(request=WorkspacePutSerializer, responses=WorkspaceSerializer, operation_id="workspaces_update")
    def put(self, request: Request, pk: int) -> Response:
        workspace = self._get(request, pk)
        workspace = services.workspace_update(workspace=workspace, replace=True, **_valid(WorkspacePutSerializer, request))
        return Response(WorkspaceSerializer(workspace).data)

    @extend_schema(responses={204: None}, operation_id="workspaces_destroy")
    def delete(self, request: Request, pk: int) -> Response:
        services.workspace_delete(workspace=self._get(request, pk))
        return Response(status=status.HTTP_204_NO_CONTENT)


class WatchlistListCreateView(generics.ListAPIView):
    serializer_class = WatchlistSerializer
    pagination_class = OldestFirst

    def get_queryset(self):  # type: ignore[no-untyped-def]
        if getattr(self, "swagger_fake_view", False):  # the schema generator has no user
            return Watchlist.objects.none()
        return watchlists_for_user(user=self.request.user)  # type: ignore[arg-type]

    @extend_schema(request=WatchlistCreateSerializer, responses={201: WatchlistSerializer}, operation_id="watchlists_create")
    def post(self, request: Request) -> Response:
        watchlist = services.watchlist_create(owner=request.user, **_valid(WatchlistCreateSerializer, request))  # type: ignore[arg-type]
        return Response(_watchlist_body(watchlist), status=status.HTTP_201_CREATED)


class _WatchlistView(APIView):
    def _get(self, request: Request, pk: int) -> Watchlist:
        return services.watchlist_get_for_user(user=request.user, watchlist_id=pk)  # type: ignore[arg-type]


class WatchlistDetailView(_WatchlistView):
    @extend_schema(responses=WatchlistSerializer, operation_id="watchlists_retrieve")
    def get(self, request: Request, pk: int) -> Response:
        return Response(_watchlist_body(self._get(request, pk)))

    @extend_schema(request=WatchlistPatchSerializer, responses=WatchlistSerializer, operation_id="watchlists_partial_update")
    def patch(self, request: Request, pk: int) -> Response:
        watchlist = self._get(request, pk)
        services.watchlist_update(watchlist=watchlist, **_valid(WatchlistPatchSerializer, request))
        return Response(_watchlist_body(watchlist))

    @extend_schema(responses={204: None}, operation_id="watchlists_destroy")
    def delete(self, request: Request, pk: int) -> Response:
        services.watchlist_delete(watchlist=self._get(request, pk))
        return Response(status=status.HTTP_204_NO_CONTENT)


class WatchlistItemsView(_WatchlistView):
    @extend_schema(
        request=WatchlistItemSerializer,
        responses={
            201: WatchlistSerializer,
            200: OpenApiResponse(WatchlistSerializer, description="The symbol was already there: nothing changed."),
        },
        operation_id="watchlists_items_add",
    )
    def post(self, request: Request, pk: int) -> Response:
        """Append a symbol (an active instrument). Adding one already there is idempotent: 200, unchanged."""
        watchlist = self._get(request, pk)
        added = services.watchlist_item_add(watchlist=watchlist, **_valid(WatchlistItemSerializer, request))
        return Response(_watchlist_body(watchlist), status=status.HTTP_201_CREATED if added else status.HTTP_200_OK)

    @extend_schema(request=WatchlistReorderSerializer, responses=WatchlistSerializer, operation_id="watchlists_items_reorder")
    def put(self, request: Request, pk: int) -> Response:
        """Reorder: the body names exactly the watchlist's symbols, in the new order."""
        watchlist = self._get(request, pk)
        services.watchlist_items_reorder(watchlist=watchlist, **_valid(WatchlistReorderSerializer, request))
        return Response(_watchlist_body(watchlist))


class WatchlistItemDetailView(_WatchlistView):
    @extend_schema(responses={200: WatchlistSerializer}, operation_id="watchlists_items_remove")
    def delete(self, request: Request, pk: int, symbol: str) -> Response:
        """Remove a symbol (404 when it is not in the watchlist)."""
        watchlist = self._get(request, pk)
        # The path's one optional trailing slash (no symbol ends with one).
        services.watchlist_item_remove(watchlist=watchlist, symbol=symbol.removesuffix("/") or symbol)
        return Response(_watchlist_body(watchlist))


class MeSettingsView(APIView):
    @extend_schema(responses=UserSettingsSerializer, operation_id="me_settings_retrieve")
    def get(self, request: Request) -> Response:
        return Response(UserSettingsSerializer(services.user_settings_get(user=request.user)).data)  # type: ignore[arg-type]

    @extend_schema(request=UserSettingsPatchSerializer, responses=UserSettingsSerializer, operation_id="me_settings_update")
    def patch(self, request: Request) -> Response:
        row = services.user_settings_update(user=request.user, **_valid(UserSettingsPatchSerializer, request))  # type: ignore[arg-type]
        return Response(UserSettingsSerializer(row).data)
