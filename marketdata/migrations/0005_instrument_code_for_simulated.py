"""Existing instruments are the simulator's (venue SIM, the column default of
0004): each one's code is its symbol (marketdata.venues)."""

from django.db import migrations
from django.db.models import F


def simulated_codes(apps, schema_editor):
    Instrument = apps.get_model("marketdata", "Instrument")
    Instrument.objects.filter(venue="SIM", code="").update(code=F("symbol"))


class Migration(migrations.Migration):
    dependencies = [
        ("marketdata", "0004_instrument_venue"),
    ]

    operations = [
        migrations.RunPython(simulated_codes, migrations.RunPython.noop),
    ]
