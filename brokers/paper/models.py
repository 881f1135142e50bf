"""The paper venue's book, saved: one PaperAccount per paper BrokerAccount,
its orders, fills and positions. Written only by brokers.paper.store under
the PaperAccount row's lock; decimal columns have the engine's scale (10
places), so a saved book loads back exactly."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from brokers.models import BrokerAccount


class PaperAccount(models.Model):
    """The venue side of a paper BrokerAccount (same id). Its row is the lock
    every change of the book takes."""

    account = models.OneToOneField(BrokerAccount, primary_key=True, on_delete=models.CASCADE, related_name="paper_book")
    starting_cash = models.DecimalField(max_digits=28, decimal_places=10, help_text="In the account's base currency.")
    cash = models.DecimalField(max_digits=28, decimal_places=10, help_text="The base currency's balance (every balance: PaperBalance).")
    fees_paid = models.DecimalField(max_digits=28, decimal_places=10, default=0, help_text="In the base currency, at each fill's rate.")
    next_order_no = models.PositiveBigIntegerField(default=1)
    next_trade_no = models.PositiveBigIntegerField(default=1)
    # Per symbol: the last quote the book saw and the size of it left
    # (book.MarketState), so a quote is never filled twice, even across restarts.
    market_state = models.JSONField(default=dict, blank=True)
    # The working orders' totals per symbol and side, kept exact by
    # store.book_save from the changes it writes: {symbol: {side:
    # [reserved, remaining qty]}} as decimal strings. A change of a few
    # orders reads these instead of summing every resting order.
    working_totals = models.JSONField(default=dict, blank=True)
    # Drawn anew (random, 63 bits) by every change of the book (store.book_save,
    # a symbol's rename): a book kept from a save is current while this is
    # unchanged. Random, not a counter, so that a rolled-back save (or a test
    # database rolled back, where ids return) never meets a kept book's value.
    version = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["account_id"]

    def __str__(self) -> str:
        return f"paper book of account #{self.account_id}"


class PaperOrder(models.Model):
    account = models.ForeignKey(PaperAccount, on_delete=models.CASCADE, related_name="orders")
    seq = models.PositiveBigIntegerField(help_text="The account's order number (time priority).")
    broker_order_id = models.CharField(max_length=24)
    client_order_id = models.CharField(max_length=64, blank=True)
    symbol = models.CharField(max_length=64)
    side = models.CharField(max_length=4)
    order_type = models.CharField(max_length=10)
    qty = models.DecimalField(max_digits=28, decimal_places=10)
    price = models.DecimalField(max_digits=28, decimal_places=10, null=True, blank=True)
    stop_price = models.DecimalField(max_digits=28, decimal_places=10, null=True, blank=True)
    time_in_force = models.CharField(max_length=3)
    reduce_only = models.BooleanField(default=False)
    position_ref = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=20)
    # True while new/partially_filled: the partial indexes below hold working orders only.
    working = models.BooleanField(default=True)
    filled_qty = models.DecimalField(max_digits=28, decimal_places=10, default=0)
    avg_fill_price = models.DecimalField(max_digits=28, decimal_places=10, null=True, blank=True)
    triggered = models.BooleanField(default=False)
    reserved = models.DecimalField(max_digits=28, decimal_places=10, default=0, help_text="Buying power held for the unfilled part.")
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Day orders: the session close.")
    message = models.TextField(blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["account_id", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["account", "broker_order_id"], name="paper_order_unique_broker_id"),
            models.UniqueConstraint(fields=["account", "seq"], name="paper_order_unique_seq"),
            models.UniqueConstraint(
                fields=["account", "client_order_id"], condition=~Q(client_order_id=""), name="paper_order_unique_client_id"
            ),
        ]
        indexes = [
            # The quote listener: which accounts have working orders on these symbols / due to expire.
            models.Index(fields=["symbol", "account"], condition=Q(working=True), name="paper_order_working_symbol"),
            models.Index(fields=["expires_at"], condition=Q(working=True), name="paper_order_working_expiry"),
            models.Index(fields=["account", "updated_at"], name="paper_order_account_updated"),
        ]

    def __str__(self) -> str:
        return f"{self.broker_order_id} {self.side} {self.qty} {self.symbol} ({self.status})"


class PaperBalance(models.Model):
    """One currency's balance of a paper account: always the sum of its ledger entries."""

    account = models.ForeignKey(PaperAccount, on_delete=models.CASCADE, related_name="balances")
    currency = models.CharField(max_length=10)
    amount = models.DecimalField(max_digits=28, decimal_places=10, default=0)
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["account_id", "currency"]
        constraints = [models.UniqueConstraint(fields=["account", "currency"], name="paper_balance_unique_currency")]

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"


class LedgerEntryKind(models.TextChoices):
    DEPOSIT = "deposit", "Deposit"
    WITHDRAWAL = "withdrawal", "Withdrawal"
    TRADE = "trade", "Trade"
    FEE = "fee", "Fee"
    FX_CONVERSION = "fx_conversion", "FX conversion"
    REALIZED_PNL = "realized_pnl", "Realized P&L"


class PaperLedgerEntry(models.Model):
    """One change of one currency's balance (book.LedgerEntry), never changed
    afterwards. ``rate``: the value of one unit of ``currency`` in the account's
    base currency when booked; ``trade_id``: the fill it belongs to."""

    account = models.ForeignKey(PaperAccount, on_delete=models.CASCADE, related_name="ledger_entries")
    currency = models.CharField(max_length=10)
    amount = models.DecimalField(max_digits=28, decimal_places=10)
    kind = models.CharField(max_length=16, choices=LedgerEntryKind.choices)
    rate = models.DecimalField(max_digits=30, decimal_places=18, null=True, blank=True)
    trade_id = models.CharField(max_length=24, blank=True)
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["account_id", "id"]
        verbose_name_plural = "paper ledger entries"
        indexes = [models.Index(fields=["account", "id"], name="paper_ledger_account_id")]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount} {self.currency}"


class PaperFill(models.Model):
    account = models.ForeignKey(PaperAccount, on_delete=models.CASCADE, related_name="fills")
    order = models.ForeignKey(PaperOrder, on_delete=models.CASCADE, related_name="fills")
    trade_id = models.CharField(max_length=24)
    broker_order_id = models.CharField(max_length=24)
    client_order_id = models.CharField(max_length=64, blank=True)
    symbol = models.CharField(max_length=64)
    side = models.CharField(max_length=4)
    qty = models.DecimalField(max_digits=28, decimal_places=10)
    price = models.DecimalField(max_digits=28, decimal_places=10)
    fee = models.DecimalField(max_digits=28, decimal_places=10)
    fee_currency = models.CharField(max_length=10, blank=True)
    executed_at = models.DateTimeField()

    class Meta:
        ordering = ["account_id", "executed_at", "id"]
        constraints = [models.UniqueConstraint(fields=["account", "trade_id"], name="paper_fill_unique_trade_id")]
        indexes = [models.Index(fields=["account", "executed_at"], name="paper_fill_account_executed")]

    def __str__(self) -> str:
        return f"{self.trade_id} {self.side} {self.qty} {self.symbol} @ {self.price}"


class PaperPosition(models.Model):
    account = models.ForeignKey(PaperAccount, on_delete=models.CASCADE, related_name="positions")
    symbol = models.CharField(max_length=64)
    qty = models.DecimalField(max_digits=28, decimal_places=10, default=0, help_text="Signed: long > 0, short < 0.")
    avg_price = models.DecimalField(max_digits=28, decimal_places=10, default=0)
    realized_pnl = models.DecimalField(max_digits=28, decimal_places=10, default=0)
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["account_id", "symbol"]
        constraints = [models.UniqueConstraint(fields=["account", "symbol"], name="paper_position_unique_symbol")]

    def __str__(self) -> str:
        return f"{self.symbol} {self.qty} @ {self.avg_price}"
