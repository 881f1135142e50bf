"""Bars in and out as CSV: the import_bars and export_bars commands and marketdata.csvio."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from marketdata import csvio
from marketdata.bars import aggregate, bucket_function, columns_from_rows
from marketdata.csvio import bars_export_csv, bars_import_csv
from marketdata.models import Bar, Instrument
from marketdata.selectors import bars_history
from marketdata.services import instrument_upsert

pytestmark = pytest.mark.django_db

T0 = int(datetime(2026, 3, 2, 14, 30, tzinfo=UTC).timestamp())  # a Monday, 09:30 in New York
HEADER = "time,open,high,low,close,volume,open_interest\n"


@pytest.fixture
def instrument() -> Instrument:
    return instrument_upsert(symbol="IO:TEST", exchange="TEST", timezone="America/New_York")


def write(tmp_path: Path, text: str, name: str = "bars.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def stored(instrument: Instrument, resolution: str = "1") -> list[tuple]:
    return [
        (int(b.time.timestamp()), b.open, b.high, b.low, b.close, b.volume, b.open_interest)
        for b in Bar.objects.filter(instrument=instrument, resolution=resolution).order_by("time")
    ]


def minute_rows(count: int, start: int = T0, oi: bool = True) -> list[tuple]:
    rows = []
    for i in range(count):
        o = Decimal("100.25") + Decimal(i) / 4
        c = o + Decimal("0.125") * (1 if i % 2 else -1)
        rows.append(
            (
                start + 60 * i,
                o,
                max(o, c) + Decimal("0.5"),
                min(o, c) - Decimal("0.0000000001"),
                c,
                Decimal("1.5") * i,
                Decimal(7 + i) if oi else None,
            )
        )
    return rows


def csv_text(rows: list[tuple]) -> str:
    return HEADER + "".join(",".join("" if v is None else str(v) for v in row) + "\n" for row in rows)


# --- import ----------------------------------------------------------------------------


def test_good_rows_load_and_every_bad_row_is_reported_by_line(instrument, tmp_path):
    text = (
        HEADER
        + f"{T0},100,101,99,100.5,10,\n"  # line 2: good
        + f"{T0 + 60},abc,101,99,100.5,10,\n"  # 3: not a number
        + "yesterday,100,101,99,100.5,10,\n"  # 4: bad time
        + f"{T0 + 120},100,100.2,99,100.5,10,\n"  # 5: high below close
        + f"{T0 + 180},100,101,100.1,100.5,10,\n"  # 6: low above open
        + f"{T0 + 240},100,101,99,100.5,-1,\n"  # 7: negative volume
        + f"{T0 + 300},0,101,0,100.5,10,\n"  # 8: price not above 0
        + f"{T0 + 390},100,101,99,100.5,10,\n"  # 9: not on a minute
        + f"{T0},100,102,99,101,10,\n"  # 10: duplicate of line 2
        + f"{T0 + 420},100,101\n"  # 11: too few fields
        + "\n"  # blank: skipped, not counted
        + "2026-03-02T14:38:00Z,100,101,99,100.5,,\n"  # 13: good, ISO, no volume
        + "2026-03-02 09:39,100,101,99,100.5,3,12.5\n"  # 14: good, New York time
    )
    progress: list[int] = []
    summary = bars_import_csv(
        instrument=instrument, stream=io.BytesIO(text.encode()), resolution="1", tz="America/New_York", progress=progress.append
    )
    assert (summary.rows, summary.inserted, summary.updated, summary.rejected) == (12, 3, 0, 9)
    reasons = {r.line: r.reason for r in summary.rejections}
    assert sorted(reasons) == [3, 4, 5, 6, 7, 8, 9, 10, 11]
    assert "open 'abc' is not a number" in reasons[3]
    assert "neither unix seconds nor ISO 8601" in reasons[4]
    assert "high 100.2 is below max(open, close) 100.5" in reasons[5]
    assert "low 100.1 is above min(open, close) 100" in reasons[6]
    assert "volume -1 is negative" in reasons[7]
    assert "open 0 is not above 0" in reasons[8] and "low 0 is not above 0" in reasons[8]
    assert "not the start of a 1-minute bar" in reasons[9]
    assert "duplicate time" in reasons[10] and "line 2" in reasons[10]
    assert "expected 7 fields, found 3" in reasons[11]
    assert progress[-1] == len(text.encode())

    assert stored(instrument) == [
        (T0, Decimal(100), Decimal(101), Decimal(99), Decimal("100.5"), Decimal(10), None),
        (T0 + 480, Decimal(100), Decimal(101), Decimal(99), Decimal("100.5"), Decimal(0), None),
        (T0 + 540, Decimal(100), Decimal(101), Decimal(99), Decimal("100.5"), Decimal(3), Decimal("12.5")),
    ]
    report = "\n".join(summary.report())
    assert "inserted 3, updated 0, rejected 9" in report and "line 10: duplicate time" in report


def test_import_command_prints_the_summary_and_reimport_updates(instrument, tmp_path):
    rows = minute_rows(5)
    path = write(tmp_path, csv_text(rows))
    out, err = run("import_bars", str(path), "--symbol", "IO:TEST")
    assert "5 rows read; inserted 5, updated 0, rejected 0" in out
    assert "100%" in err
    assert stored(instrument) == rows

    changed = [(*row[:4], row[4] + Decimal("0.01"), *row[5:]) for row in rows]
    changed = [(r[0], r[1], r[2] + Decimal("0.01"), *r[3:]) for r in changed]
    path = write(tmp_path, csv_text(changed))
    out, _ = run("import_bars", str(path), "--symbol", "IO:TEST")
    assert "inserted 0, updated 5, rejected 0" in out
    assert stored(instrument) == changed
    assert Bar.objects.filter(instrument=instrument).count() == 5


def test_rows_are_upserted_in_chunks(instrument, monkeypatch):
    monkeypatch.setattr(csvio, "UPSERT_CHUNK_ROWS", 3)
    rows = minute_rows(8)
    calls: list[int] = []
    summary = bars_import_csv(instrument=instrument, stream=io.StringIO(csv_text(rows)), resolution="1", progress=calls.append)
    assert (summary.inserted, summary.rejected) == (8, 0)
    assert len(calls) == 3  # two full chunks and the rest
    assert stored(instrument) == rows


def test_import_reads_standard_input(instrument, monkeypatch):
    rows = minute_rows(3)
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(("\ufeff" + csv_text(rows)).encode())))
    out, err = run("import_bars", "-", "--symbol", "IO:TEST")
    assert "inserted 3" in out and "Reading -" in err
    assert stored(instrument) == rows


def test_dry_run_writes_nothing(instrument, tmp_path):
    bars_import_csv(instrument=instrument, stream=io.StringIO(csv_text(minute_rows(2))), resolution="1")
    path = write(tmp_path, csv_text(minute_rows(4)) + "bad,1,1,1,1,1,\n")
    before = stored(instrument)
    out, _ = run("import_bars", str(path), "--symbol", "IO:TEST", "--dry-run")
    assert "Dry run, nothing written" in out
    assert "would insert 2, would update 2, rejected 1" in out
    assert stored(instrument) == before

    out, err = run("import_bars", str(path), "--symbol", "NEW:ONE", "--create-instrument", "--dry-run")
    assert "would insert 4" in out and "Would create instrument NEW:ONE" in err
    assert not Instrument.objects.filter(symbol="NEW:ONE").exists()


def test_create_instrument_makes_an_unknown_symbol(tmp_path):
    path = write(tmp_path, csv_text(minute_rows(3)))
    out, err = run("import_bars", str(path), "--symbol", "BRAND/NEW", "--create-instrument", "--verbosity", "0")
    assert "inserted 3" in out and "Created instrument BRAND/NEW" in err
    assert "%" not in err  # no progress at verbosity 0
    assert Bar.objects.filter(instrument__symbol="BRAND/NEW").count() == 3


def test_daily_bars_start_at_midnight_in_the_instruments_timezone(instrument, tmp_path):
    text = "Time,Open,High,Low,Close,Volume,Note\n2026-03-06,10,11,9,10.5,100,fri\n2026-03-09,10.5,12,10,11,200,mon\n"
    path = write(tmp_path, text)
    out, _ = run("import_bars", str(path), "--symbol", "IO:TEST", "--resolution", "D", "--timezone", "America/New_York")
    assert "inserted 2" in out and "Ignored columns: Note" in out
    assert [b[0] for b in stored(instrument, "1D")] == [
        int(datetime(2026, 3, 6, 5, tzinfo=UTC).timestamp()),  # 00:00 EST
        int(datetime(2026, 3, 9, 4, tzinfo=UTC).timestamp()),  # 00:00 EDT
    ]
    # Read as UTC dates they are not the start of a New York day.
    out, _ = run("import_bars", str(path), "--symbol", "IO:TEST", "--resolution", "1D")
    assert "rejected 2" in out and "not the start of a day at 00:00 America/New_York" in out


def test_local_times_through_the_autumn_change_keep_both_repeated_hours(instrument):
    # New York repeats 01:00-01:59 on 1 November 2026; the file is in time order.
    text = HEADER + "".join(
        f"2026-11-01 {t},1,1,1,1,1,\n" for t in ("00:58", "00:59", "01:00", "01:59", "01:00", "01:01", "01:59", "02:00", "02:01")
    )
    summary = bars_import_csv(instrument=instrument, stream=io.StringIO(text), resolution="1", tz="America/New_York")
    assert (summary.inserted, summary.rejected) == (9, 0)
    times = [b[0] for b in stored(instrument)]
    assert times == sorted(times) and len(set(times)) == 9
    assert times[4] - times[2] == 3600  # the second 01:00 is an hour after the first

    gap = HEADER + "2026-03-08 02:30,1,1,1,1,1,\n"  # the clocks skip 02:00-02:59
    summary = bars_import_csv(instrument=instrument, stream=io.StringIO(gap), resolution="1", tz="America/New_York")
    assert summary.rejected == 1 and "does not exist" in summary.rejections[0].reason


def test_rejections_beyond_fifty_are_counted_not_listed(instrument, tmp_path):
    path = write(tmp_path, HEADER + "".join(f"{T0 + 60 * i},1,0.5,1,1,1,\n" for i in range(70)))
    out, _ = run("import_bars", str(path), "--symbol", "IO:TEST")
    assert "rejected 70" in out
    assert out.count("  line ") == 50
    assert "... and 20 more rejected rows." in out


def test_values_the_database_would_round_are_refused(instrument):
    text = HEADER + f"{T0},1.00000000001,2,1,1,1,\n{T0 + 60},1.000000000000,2,1,1,0.000000001,\n{T0 + 120},1e20,1e20,1,1,1,\n"
    summary = bars_import_csv(instrument=instrument, stream=io.StringIO(text), resolution="1")
    reasons = [r.reason for r in summary.rejections]
    assert "more than 10 decimal places" in reasons[0]
    assert "volume 0.000000001 has more than 8 decimal places" in reasons[1]
    assert "too large" in reasons[2]
    assert summary.inserted == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("time,open,high,low,close\n1,1,1,1,1\n", "lacks volume"),
        ("date;open;high;low;close;volume\n", "lacks time"),
    ],
)
def test_a_file_that_is_not_bar_csv_fails_the_command(instrument, tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(CommandError, match=message):
        run("import_bars", str(path), "--symbol", "IO:TEST")
    assert not Bar.objects.exists()


def test_unknown_symbol_or_missing_file_fails_the_command(instrument, tmp_path):
    path = write(tmp_path, csv_text(minute_rows(1)))
    with pytest.raises(CommandError, match="Unknown symbol"):
        run("import_bars", str(path), "--symbol", "NOPE")
    with pytest.raises(CommandError, match="Cannot read"):
        run("import_bars", str(tmp_path / "missing.csv"), "--symbol", "IO:TEST")
    with pytest.raises(CommandError, match="Unsupported resolution"):
        run("import_bars", str(path), "--symbol", "IO:TEST", "--resolution", "7")
    with pytest.raises(CommandError, match="Unknown timezone"):
        run("import_bars", str(path), "--symbol", "IO:TEST", "--timezone", "Mars/Olympus")
    with pytest.raises(CommandError, match="Unknown symbol"):
        run("export_bars", "--symbol", "NOPE")
    assert not Instrument.objects.filter(symbol="NOPE").exists()


# --- export ----------------------------------------------------------------------------


def test_export_then_import_into_another_instrument_gives_identical_bars(instrument, tmp_path):
    rows = minute_rows(30) + minute_rows(5, start=T0 + 86_400, oi=False)
    bars_import_csv(instrument=instrument, stream=io.StringIO(csv_text(rows)), resolution="1")
    out_path = tmp_path / "export.csv"
    _, err = run("export_bars", "--symbol", "IO:TEST", "--output", str(out_path))
    assert "Exported 35 1 bars" in err
    text = out_path.read_text()
    assert text.startswith(HEADER)
    assert "2026-03-02T14:30:00Z,100.25,100.75,100.1249999999,100.125,0,7\n" in text

    copy = instrument_upsert(symbol="IO:COPY", timezone="America/New_York")
    out, _ = run("import_bars", str(out_path), "--symbol", "IO:COPY")
    assert "inserted 35, updated 0, rejected 0" in out
    assert stored(copy) == stored(instrument) == rows


def test_export_aggregates_coarser_resolutions_exactly(instrument, tmp_path):
    rows = minute_rows(30)
    bars_import_csv(instrument=instrument, stream=io.StringIO(csv_text(rows)), resolution="1")
    out, _ = run("export_bars", "--symbol", "IO:TEST", "--resolution", "5")
    lines = out.splitlines()
    assert lines[0] == HEADER.strip() and len(lines) == 1 + 6
    first = rows[:5]
    open_, high, low, close = first[0][1], max(r[2] for r in first), min(r[3] for r in first), first[-1][4]
    volume = sum(r[5] for r in first)
    time, *numbers, open_interest = lines[1].split(",")
    assert (time, open_interest) == ("2026-03-02T14:30:00Z", "")
    assert [Decimal(n) for n in numbers] == [open_, high, low, close, volume]

    # Imported as 5-minute bars elsewhere they are the bars the charts get.
    five = instrument_upsert(symbol="IO:FIVE", timezone="America/New_York")
    bars_import_csv(instrument=five, stream=io.StringIO(out), resolution="5")
    history = bars_history(instrument=instrument, resolution="5", start=T0, end=T0 + 3600, convert=Decimal)
    assert [row[:6] for row in stored(five, "5")] == list(zip(*history.columns, strict=True))

    daily, _ = run("export_bars", "--symbol", "IO:TEST", "--resolution", "1D")
    assert daily.splitlines()[1].startswith("2026-03-02T05:00:00Z,100.25,")  # midnight in New York


def test_export_range_selects_bars_by_start(instrument, tmp_path):
    bars_import_csv(instrument=instrument, stream=io.StringIO(csv_text(minute_rows(30))), resolution="1")
    out, _ = run("export_bars", "--symbol", "IO:TEST", "--from", "2026-03-02T14:35:00Z", "--to", str(T0 + 600))
    assert [line.split(",")[0] for line in out.splitlines()[1:]] == [f"2026-03-02T14:{m}:00Z" for m in range(35, 40)]
    # Bars starting in the range are whole: the 15-minute bar from 14:30 has all its minutes.
    out, _ = run("export_bars", "--symbol", "IO:TEST", "--resolution", "15", "--from", str(T0), "--to", str(T0 + 60))
    (row,) = out.splitlines()[1:]
    assert row.split(",")[5] == str(sum(Decimal("1.5") * i for i in range(15)))

    with pytest.raises(CommandError, match="--from"):
        run("export_bars", "--symbol", "IO:TEST", "--from", "soon")


def test_export_without_bars_writes_the_header_only(instrument):
    stream = io.StringIO()
    assert bars_export_csv(instrument=instrument, stream=stream, resolution="1") == 0
    assert stream.getvalue() == HEADER


@override_settings(HISTORY_MAX_BARS=10)
def test_export_reads_in_windows_without_splitting_an_overnight_session_day(tmp_path):
    # Sunday 18:00 to Tuesday 10:00 New York, every 10 minutes; the session day
    # starting on Monday evening is read in two windows (they meet at midnight).
    futures = instrument_upsert(symbol="IO:FUT", timezone="America/New_York", session="1800-1700:23456")
    start = int(datetime(2026, 3, 1, 23, 0, tzinfo=UTC).timestamp())
    rows = minute_rows(240, start=start)
    rows = [(start + 600 * i, *row[1:]) for i, row in enumerate(rows)]
    bars_import_csv(instrument=futures, stream=io.StringIO(csv_text(rows)), resolution="1")

    out, _ = run("export_bars", "--symbol", "IO:FUT", "--resolution", "1D")
    got = [(line.split(",")[0], *(Decimal(v) for v in line.split(",")[1:6])) for line in out.splitlines()[1:]]
    want = aggregate(
        columns_from_rows([r[:6] for r in rows], convert=Decimal), bucket_function("1D", "America/New_York", "1800-1700:23456")
    )
    assert got == [(csvio.iso_utc(t), *values) for t, *values in zip(*want, strict=True)]
    assert len(got) == 2  # Monday's and Tuesday's sessions
