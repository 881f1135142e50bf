from core.urls import route
from oms.api import views

urlpatterns = [
    *route("oms/commands", views.CommandsView.as_view(), name="oms-commands"),
    *route("oms/orders/open", views.OpenOrdersView.as_view(), name="oms-orders-open"),
    *route("oms/orders/history", views.OrderHistoryView.as_view(), name="oms-orders-history"),
    *route("oms/deals", views.DealsView.as_view(), name="oms-deals"),
    *route("oms/positions/open", views.OpenPositionsView.as_view(), name="oms-positions-open"),
    *route("oms/positions/history", views.PositionHistoryView.as_view(), name="oms-positions-history"),
    *route("oms/reassign", views.ReassignView.as_view(), name="oms-reassign"),
    *route("accounts/<id:pk>/orders", views.AccountOrdersView.as_view(), name="account-orders"),
    *route("accounts/<id:pk>/batch-orders", views.AccountBatchOrdersView.as_view(), name="account-batch-orders"),
    *route("accounts/<id:pk>/positions", views.AccountPositionsView.as_view(), name="account-positions"),
    *route("accounts/<id:pk>/holdings", views.AccountHoldingsView.as_view(), name="account-holdings"),
    *route("accounts/<id:pk>/funds", views.AccountFundsView.as_view(), name="account-funds"),
    *route("accounts/<id:pk>/sync", views.AccountSyncView.as_view(), name="account-sync"),
    *route("accounts/<id:pk>/cancel-all", views.AccountCancelAllView.as_view(), name="account-cancel-all"),
    *route("accounts/<id:pk>/flatten", views.AccountFlattenView.as_view(), name="account-flatten"),
    *route("ws/status", views.WsStatusView.as_view(), name="ws-status"),
    *route("orders/<id:pk>", views.OrderDetailView.as_view(), name="order-detail"),
    *route("orders/<id:pk>/cancel", views.OrderCancelView.as_view(), name="order-cancel"),
    *route("orders/<id:pk>/change", views.OrderChangeView.as_view(), name="order-change"),
]
