from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.serializers import ApiKeyCreatedSerializer, ApiKeyCreateSerializer, ApiKeySerializer, MeSerializer
from accounts.models import ApiKey
from accounts.permissions import ApiKeyManagementPermission
from accounts.services import api_key_create, api_key_revoke_for_user


class MeView(APIView):
    @extend_schema(responses=MeSerializer, operation_id="me")
    def get(self, request: Request) -> Response:
        return Response(MeSerializer(request.user).data)


def _calling_key(request: Request) -> ApiKey | None:
    return request.auth if isinstance(request.auth, ApiKey) else None


class ApiKeyListCreateView(generics.ListAPIView):
    serializer_class = ApiKeySerializer
    throttle_scope = "api_keys"
    # Instead of the read/trade rule: a read key with the keys scope may create read keys.
    permission_classes = [IsAuthenticated, ApiKeyManagementPermission]

    def get_queryset(self):  # type: ignore[no-untyped-def]
        if getattr(self, "swagger_fake_view", False):  # the schema generator has no user
            return ApiKey.objects.none()
        return ApiKey.objects.filter(user=self.request.user)

    @extend_schema(request=ApiKeyCreateSerializer, responses={201: ApiKeyCreatedSerializer}, operation_id="api_keys_create")
    def post(self, request: Request) -> Response:
        data = ApiKeyCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        issued = api_key_create(user=request.user, parent=_calling_key(request), **data.validated_data)  # type: ignore[arg-type]
        body = ApiKeySerializer(issued.api_key).data | {"key": issued.key}
        return Response(body, status=status.HTTP_201_CREATED)


class ApiKeyDetailView(APIView):
    permission_classes = [IsAuthenticated, ApiKeyManagementPermission]

    @extend_schema(responses={204: None}, operation_id="api_keys_revoke")
    def delete(self, request: Request, pk: int) -> Response:
        api_key_revoke_for_user(user=request.user, api_key_id=pk, by_key=_calling_key(request))  # type: ignore[arg-type]
        return Response(status=status.HTTP_204_NO_CONTENT)
