from django.db import migrations, models

# Frozen here: the rule in brokers.models may change after this migration.
REQUIRED = {"kis": ("app_key", "app_secret"), "ccxt": ("api_key", "secret"), "kite": ("api_key", "api_secret")}


def mark_not_configured(apps, schema_editor):
    """Active accounts missing a required credential become not_configured."""
    from brokers.crypto import CredentialError, decrypt_json

    BrokerAccount = apps.get_model("brokers", "BrokerAccount")
    for account in BrokerAccount.objects.filter(status="active", kind__in=list(REQUIRED)).iterator():
        try:
            stored = decrypt_json(account.credentials_encrypted) if account.credentials_encrypted else {}
        except CredentialError:
            stored = {}
        if any(not stored.get(name) for name in REQUIRED[account.kind]):
            BrokerAccount.objects.filter(pk=account.pk).update(status="not_configured")


class Migration(migrations.Migration):
    dependencies = [
        ("brokers", "0002_brokeraccount_funds_seq_brokeraccount_orders_seq_and_more"),
    ]

    operations = [
        migrations.AlterField(
            model_name="brokeraccount",
            name="status",
            field=models.CharField(
                choices=[("active", "Active"), ("disabled", "Disabled"), ("error", "Error"), ("not_configured", "Not configured")],
                default="active",
                max_length=16,
            ),
        ),
        migrations.RunPython(mark_not_configured, migrations.RunPython.noop),
    ]
