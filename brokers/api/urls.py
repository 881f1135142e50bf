from brokers.api import views
from core.urls import route

urlpatterns = [
    *route("accounts", views.AccountListCreateView.as_view(), name="accounts"),
    *route("accounts/<int:pk>", views.AccountDetailView.as_view(), name="account-detail"),
    *route("accounts/<int:pk>/ledger", views.AccountLedgerView.as_view(), name="account-ledger"),
]
