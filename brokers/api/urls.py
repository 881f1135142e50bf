from brokers.api import ccxt_views, kis_views, kite_postback, kite_views, views
from core.urls import route

urlpatterns = [
    *route("accounts", views.AccountListCreateView.as_view(), name="accounts"),
    *route("accounts/<id:pk>", views.AccountDetailView.as_view(), name="account-detail"),
    *route("accounts/<id:pk>/ledger", views.AccountLedgerView.as_view(), name="account-ledger"),
    *route("accounts/<id:pk>/status", views.AccountStatusView.as_view(), name="account-status"),
    # The upstream KIS terminal's paths (README, "KIS accounts").
    *route("auth/kis/status", kis_views.AuthKisStatusView.as_view(), name="auth-kis-status"),
    *route("auth/kis/token/refresh", kis_views.AuthKisTokenRefreshView.as_view(), name="auth-kis-token-refresh"),
    *route("auth/kis/approval/refresh", kis_views.AuthKisApprovalRefreshView.as_view(), name="auth-kis-approval-refresh"),
    *route("accounts/<id:pk>/kis/status", kis_views.AccountKisStatusView.as_view(), name="account-kis-status"),
    *route("accounts/<id:pk>/kis/token/refresh", kis_views.AccountKisTokenRefreshView.as_view(), name="account-kis-token-refresh"),
    *route("accounts/<id:pk>/kis/approval/refresh", kis_views.AccountKisApprovalRefreshView.as_view(), name="account-kis-approval-refresh"),
    # Logging in to Kite (README, "Kite accounts"): the link, and where Kite's login returns.
    *route("accounts/<id:pk>/kite/login", kite_views.KiteLoginView.as_view(), name="kite_login"),
    *route("brokers/kite/callback", kite_views.KiteCallbackView.as_view(), name="kite_callback"),
    # The upstream CCXT OMS's pass-through (README, "CCXT pass-through").
    *route("ccxt/commands", ccxt_views.CcxtBatchView.as_view(), name="ccxt-batch"),
    *route("ccxt/<id:pk>/<str:func>", ccxt_views.CcxtCallView.as_view(), name="ccxt-call"),
    # Kite's postbacks: public, authenticated by their checksum.
    *route("brokers/kite/postback", kite_postback.KitePostbackView.as_view(), name="kite_postback"),
]
