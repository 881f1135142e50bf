from __future__ import annotations

from django.conf import settings
from django.db import models

from brokers.crypto import CredentialError, decrypt_json


class BrokerKind(models.TextChoices):
    PAPER = "paper", "Paper"
    KIS = "kis", "Korea Investment & Securities"
    CCXT = "ccxt", "Crypto exchange (CCXT)"
    KITE = "kite", "Zerodha Kite"


class Environment(models.TextChoices):
    PAPER = "paper", "Paper / testnet"
    LIVE = "live", "Live"


class PositionMode(models.TextChoices):
    NETTING = "netting", "Netting"
    HEDGING = "hedging", "Hedging"


class AccountStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    DISABLED = "disabled", "Disabled"
    ERROR = "error", "Error"
    # No adapter serves its kind, or a required credential is unset: orders are refused at once.
    NOT_CONFIGURED = "not_configured", "Not configured"


# Read, never stored: an active account whose broker needs a person to log in
# first (Kite: no valid access token). Its orders are refused at once.
LOGIN_REQUIRED = "login_required"
# The statuses an account reads as (the stored ones and login_required).
ACCOUNT_READ_STATUS_CHOICES = [*AccountStatus.choices, (LOGIN_REQUIRED, "Login required")]


# Credential fields each broker kind needs (the adapters read these names):
# an account lacking one is not_configured.
REQUIRED_CREDENTIALS: dict[str, tuple[str, ...]] = {
    BrokerKind.PAPER: (),
    BrokerKind.KIS: ("app_key", "app_secret"),
    BrokerKind.CCXT: ("api_key", "secret"),
    BrokerKind.KITE: ("api_key", "api_secret"),
}
OPTIONAL_CREDENTIALS: dict[str, tuple[str, ...]] = {
    BrokerKind.PAPER: (),
    BrokerKind.KIS: ("hts_id",),
    # What ccxt's requiredCredentials may also name (snake_case of apiKey, secret, password, uid...).
    BrokerKind.CCXT: ("password", "uid", "login", "twofa", "private_key", "wallet_address", "token", "account_id"),
    BrokerKind.KITE: ("access_token",),
}


class BrokerAccount(models.Model):
    """A trading account at one broker (the "account" of the API)."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="broker_accounts")
    kind = models.CharField(max_length=10, choices=BrokerKind.choices, default=BrokerKind.PAPER)
    label = models.CharField(max_length=100)
    environment = models.CharField(max_length=10, choices=Environment.choices, default=Environment.PAPER)
    position_mode = models.CharField(max_length=10, choices=PositionMode.choices, default=PositionMode.NETTING)
    base_currency = models.CharField(max_length=10, default="USD")
    # Broker-side identity: KIS account number + product code, Kite user id,
    # the CCXT exchange id. Not secret.
    broker_account_number = models.CharField(max_length=32, blank=True)
    broker_product_code = models.CharField(max_length=8, blank=True)
    broker_user_id = models.CharField(max_length=64, blank=True)
    exchange_id = models.CharField(max_length=32, blank=True, help_text="CCXT exchange id, e.g. binance.")
    broker_options = models.JSONField(
        default=dict,
        blank=True,
        help_text='Staff-editable options passed to the broker client, e.g. CCXT\'s {"options": {"defaultType": "future"}}.',
    )
    # JSON of secrets, encrypted (``enc:v1:...``). Write-only everywhere.
    credentials_encrypted = models.TextField(blank=True, default="")
    status = models.CharField(max_length=16, choices=AccountStatus.choices, default=AccountStatus.ACTIVE)
    trading_enabled = models.BooleanField(default=True, help_text="Staff kill switch: off refuses new orders.")
    last_synced_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    last_error_at = models.DateTimeField(null=True, blank=True)
    # Per-channel stream sequences (orders:, positions:, funds:<id>), taken in
    # the transaction that changes state so updates are gap-free.
    orders_seq = models.BigIntegerField(default=0)
    positions_seq = models.BigIntegerField(default=0)
    funds_seq = models.BigIntegerField(default=0)
    # Reconciliation checkpoint: fills and orders are pulled from here on.
    reconciled_until = models.DateTimeField(null=True, blank=True)
    # Account sync (funds, holdings, positions, open orders, the day's fills):
    # the last run's length and whether the first sync (which books what the
    # broker already holds as ``source=external``) has happened.
    last_sync_duration = models.FloatField(null=True, blank=True, help_text="Seconds the last sync took.")
    last_sync_error = models.TextField(blank=True, default="")
    initial_synced_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["owner", "kind"])]

    def __str__(self) -> str:
        return f"{self.label} ({self.kind}, #{self.pk})"

    @property
    def missing_credentials(self) -> list[str]:
        """The required credentials of its kind that are not set (names only)."""
        required = REQUIRED_CREDENTIALS.get(self.kind, ())
        if not required:
            return []
        try:
            stored = decrypt_json(self.credentials_encrypted) if self.credentials_encrypted else {}
        except CredentialError:
            stored = {}  # no configured key reads them: as good as unset
        return [name for name in required if not stored.get(name)]

    @property
    def has_credentials(self) -> bool:
        """Credentials are stored and every required one is set."""
        return bool(self.credentials_encrypted) and not self.missing_credentials


class BrokerToken(models.Model):
    """A token a broker issued to one credential (KIS access token and WS
    approval key, Kite access token): encrypted, with its expiry.

    Keyed by the credential, not the account: two accounts on one app key
    share its token (KIS issues one per app key and limits how often).
    ``credential_id`` is a one-way digest of the app key, never the key."""

    kind = models.CharField(max_length=10, choices=BrokerKind.choices)
    environment = models.CharField(max_length=10, choices=Environment.choices)
    credential_id = models.CharField(max_length=64)
    name = models.CharField(max_length=32, help_text="access_token, approval_key, ...")
    value_encrypted = models.TextField(blank=True, default="")
    issued_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    # The broker's issue-rate rule counts attempts, successful or not.
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["kind", "environment", "credential_id", "name"], name="broker_token_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.kind}/{self.environment} {self.name} ({self.credential_id[:8]})"
