from brokers.api import views
from core.urls import route

urlpatterns = [
    *route("accounts", views.AccountListCreateView.as_view(), name="accounts"),
    *route("accounts/<id:pk>", views.AccountDetailView.as_view(), name="account-detail"),
    *route("accounts/<id:pk>/ledger", views.AccountLedgerView.as_view(), name="account-ledger"),
]
