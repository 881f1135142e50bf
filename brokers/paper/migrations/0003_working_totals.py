from decimal import Decimal

from django.db import migrations, models
from django.db.models import Sum


def working_totals(apps, schema_editor):
    """Each book's totals over its working orders, as store.book_save keeps them."""
    PaperAccount = apps.get_model("paper", "PaperAccount")
    PaperOrder = apps.get_model("paper", "PaperOrder")
    for paper in PaperAccount.objects.all():
        totals: dict = {}
        rows = (
            PaperOrder.objects.filter(account=paper, working=True)
            .order_by()
            .values_list("symbol", "side")
            .annotate(Sum("reserved"), Sum("qty"), Sum("filled_qty"))
        )
        for symbol, side, reserved, qty, filled in rows:
            remaining = (qty or Decimal(0)) - (filled or Decimal(0))
            totals.setdefault(symbol, {})[side] = [str(reserved or Decimal(0)), str(remaining)]
        if totals:
            PaperAccount.objects.filter(pk=paper.pk).update(working_totals=totals)


class Migration(migrations.Migration):
    dependencies = [
        ("paper", "0002_multi_currency_ledger"),
    ]

    operations = [
        migrations.AddField(
            model_name="paperaccount",
            name="working_totals",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.RunPython(working_totals, migrations.RunPython.noop),
    ]
