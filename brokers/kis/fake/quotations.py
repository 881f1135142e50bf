"""The fake's answers to KIS's quotation TRs (current price, daily and minute
charts), from the Exchange's quotes; history before today is a deterministic
wave around the previous close, so charts look alive and repeat."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any

from brokers.kis import protocol
from brokers.kis.fake.exchange import Exchange, Quote, Rejected
from brokers.kis.fake.inquiries import S, rate
from brokers.kis.fake.records import digits, now_kst, plain


def _quote(exchange: Exchange, query: S) -> Quote:
    code = query.get("FID_INPUT_ISCD", "")
    if query.get("FID_COND_MRKT_DIV_CODE", "") not in ("J", "NX", "UN"):
        raise Rejected("OPSQ2001", "ERROR : INPUT FIELD NAME FID_COND_MRKT_DIV_CODE")
    quote = exchange.quotes.get(code)
    if quote is None:
        raise Rejected("OPSQ2001", "ERROR : INPUT FIELD NAME FID_INPUT_ISCD")
    return quote


def _on_tick(price: Decimal) -> Decimal:
    tick = protocol.krx_tick_size(price)
    return max(Decimal(tick), (price / tick).quantize(Decimal(1)) * tick)


def price(exchange: Exchange, query: S) -> dict[str, Any]:
    with exchange.lock:
        q = _quote(exchange, query)
        diff = q.price - q.prev_close
        upper = (q.prev_close * Decimal("1.3")).quantize(Decimal(1), ROUND_DOWN)
        lower = (q.prev_close * Decimal("0.7")).quantize(Decimal(1), ROUND_DOWN)
        output = {
            "iscd_stat_cls_code": "55",
            "marg_rate": "20.00",
            "rprs_mrkt_kor_name": "KOSPI200",
            "bstp_kor_isnm": "",
            "temp_stop_yn": "N",
            "oprc_rang_cont_yn": "N",
            "clpr_rang_cont_yn": "N",
            "crdt_able_yn": "Y",
            "grmn_rate_cls_code": "40",
            "elw_pblc_yn": "N",
            "stck_prpr": plain(q.price),
            "prdy_vrss": plain(diff),
            "prdy_vrss_sign": "2" if diff > 0 else "5" if diff < 0 else "3",
            "prdy_ctrt": rate(diff, q.prev_close),
            "acml_tr_pbmn": plain(q.amount.quantize(Decimal(1))),
            "acml_vol": str(q.volume),
            "prdy_vrss_vol_rate": "0.00",
            "stck_oprc": plain(q.open),
            "stck_hgpr": plain(q.high),
            "stck_lwpr": plain(q.low),
            "stck_mxpr": plain(upper - upper % protocol.krx_tick_size(upper)),
            "stck_llam": plain(lower - lower % protocol.krx_tick_size(lower)),
            "stck_sdpr": plain(q.prev_close),
            "wghn_avrg_stck_prc": plain((q.amount / q.volume).quantize(Decimal("0.01"))) if q.volume else plain(q.price),
            "hts_frgn_ehrt": "0.00",
            "frgn_ntby_qty": "0",
            "pgtr_ntby_qty": "0",
            "pvt_scnd_dmrs_prc": "0",
            "pvt_frst_dmrs_prc": "0",
            "pvt_pont_val": "0",
            "pvt_frst_dmsp_prc": "0",
            "pvt_scnd_dmsp_prc": "0",
            "dmrs_val": "0",
            "dmsp_val": "0",
            "cpfn": "0",
            "rstc_wdth_prc": plain(q.prev_close * Decimal("0.3")),
            "stck_fcam": "100",
            "stck_sspr": "0",
            "aspr_unit": str(protocol.krx_tick_size(q.price)),
            "hts_deal_qty_unit_val": "1",
            "lstn_stcn": "0",
            "hts_avls": "0",
            "per": "0.00",
            "pbr": "0.00",
            "stac_month": "12",
            "vol_tnrt": "0.00",
            "eps": "0.00",
            "bps": "0.00",
            "d250_hgpr": plain(q.high),
            "d250_lwpr": plain(q.low),
            "stck_dryy_hgpr": plain(q.high),
            "stck_dryy_lwpr": plain(q.low),
            "w52_hgpr": plain(q.high),
            "w52_lwpr": plain(q.low),
            "whol_loan_rmnd_rate": "0.00",
            "ssts_yn": "Y",
            "stck_shrn_iscd": q.code,
            "fcam_cnnm": "100",
            "cpfn_cnnm": "0",
            "frgn_hldn_qty": "0",
            "vi_cls_code": "N",
            "ovtm_vi_cls_code": "N",
            "last_ssts_cntg_qty": "0",
            "invt_caful_yn": "N",
            "mrkt_warn_cls_code": "00",
            "short_over_yn": "N",
            "sltr_yn": "N",
        }
    return {"output": output}


def _synthetic_close(q: Quote, day: date) -> Decimal:
    # A deterministic wave around the last price, so charts look alive and repeat.
    seed = int(q.code) if digits(q.code) else sum(map(ord, q.code))
    wave = math.sin(day.toordinal() / 5.0 + seed) * 0.03 + math.sin(day.toordinal() / 23.0 + seed / 7) * 0.06
    return _on_tick(q.prev_close * Decimal(str(1 + wave)))


def _bar_of_day(q: Quote, day: date, today: date) -> S:
    if day == today:
        o, h, lo, c, v = q.open, q.high, q.low, q.price, q.volume
    else:
        c = _synthetic_close(q, day)
        o = _synthetic_close(q, day - timedelta(days=1))
        h, lo, v = max(o, c) + protocol.krx_tick_size(c), min(o, c), 100_000 + day.toordinal() % 50_000
    return {
        "stck_bsop_date": day.strftime("%Y%m%d"),
        "stck_oprc": plain(o),
        "stck_hgpr": plain(h),
        "stck_lwpr": plain(lo),
        "stck_clpr": plain(c),
        "acml_vol": str(v),
    }


def _parse_date(text: str) -> date:
    if not (len(text) == 8 and digits(text)):
        raise Rejected("OPSQ2001", "ERROR : INPUT FIELD NAME FID_INPUT_DATE_1")
    try:
        return datetime.strptime(text, "%Y%m%d").date()  # noqa: DTZ007 - a calendar date
    except ValueError:
        raise Rejected("OPSQ2001", "ERROR : INPUT FIELD NAME FID_INPUT_DATE_1") from None


def daily_chart(exchange: Exchange, query: S) -> dict[str, Any]:
    start, end = _parse_date(query.get("FID_INPUT_DATE_1", "")), _parse_date(query.get("FID_INPUT_DATE_2", ""))
    period = query.get("FID_PERIOD_DIV_CODE", "D")
    if period not in ("D", "W", "M", "Y"):
        raise Rejected("OPSQ2001", "ERROR : INPUT FIELD NAME FID_PERIOD_DIV_CODE")
    today = now_kst().date()
    end = min(end, today)
    with exchange.lock:
        q = _quote(exchange, query)
        days: list[S] = []
        day = end
        while day >= start and len(days) < protocol.DAILY_CHART_MAX_ROWS * 31:
            if day.weekday() < 5:
                days.append(_bar_of_day(q, day, today))
            day -= timedelta(days=1)
        rows = days if period == "D" else _group(days, period)
        summary = {
            "stck_shrn_iscd": q.code,
            "hts_kor_isnm": q.name,
            "stck_prpr": plain(q.price),
            "prdy_vrss": plain(q.price - q.prev_close),
            "stck_prdy_clpr": plain(q.prev_close),
            "acml_vol": str(q.volume),
            "stck_oprc": plain(q.open),
            "stck_hgpr": plain(q.high),
            "stck_lwpr": plain(q.low),
        }
    return {"output1": summary, "output2": [dict(r, **_bar_extras()) for r in rows[: protocol.DAILY_CHART_MAX_ROWS]]}


def _bar_extras() -> S:
    return {
        "acml_tr_pbmn": "0",
        "flng_cls_code": "00",
        "prtt_rate": "0.00",
        "mod_yn": "N",
        "prdy_vrss_sign": "3",
        "prdy_vrss": "0",
        "revl_issu_reas": "",
    }


def _group(days: list[S], period: str) -> list[S]:
    """Daily rows (newest first) into weeks, months or years (dated by their last day)."""
    groups: dict[str, list[S]] = {}
    for row in days:
        d = datetime.strptime(row["stck_bsop_date"], "%Y%m%d").date()  # noqa: DTZ007
        key = f"{d.isocalendar()[0]}{d.isocalendar()[1]:02d}" if period == "W" else row["stck_bsop_date"][: 6 if period == "M" else 4]
        groups.setdefault(key, []).append(row)
    out = []
    for rows in groups.values():  # newest first, each group's rows newest first
        out.append(
            {
                "stck_bsop_date": rows[0]["stck_bsop_date"],
                "stck_oprc": rows[-1]["stck_oprc"],
                "stck_hgpr": plain(max(Decimal(r["stck_hgpr"]) for r in rows)),
                "stck_lwpr": plain(min(Decimal(r["stck_lwpr"]) for r in rows)),
                "stck_clpr": rows[0]["stck_clpr"],
                "acml_vol": str(sum(int(r["acml_vol"]) for r in rows)),
            }
        )
    return out


def minute_chart(exchange: Exchange, query: S) -> dict[str, Any]:
    hour = query.get("FID_INPUT_HOUR_1", "")
    if not (len(hour) == 6 and digits(hour)) or int(hour[:2]) > 23 or int(hour[2:4]) > 59:
        raise Rejected("OPSQ2001", "ERROR : INPUT FIELD NAME FID_INPUT_HOUR_1")
    today = now_kst()
    with exchange.lock:
        q = _quote(exchange, query)
        minute = today.replace(hour=int(hour[:2]), minute=int(hour[2:4]), second=0, microsecond=0)
        minute = min(minute, today.replace(second=0, microsecond=0))
        rows = []
        recorded = sorted(q.minutes)
        for _ in range(protocol.MINUTE_CHART_ROWS):
            key = minute.strftime("%H%M")
            bar = q.minutes.get(key)
            if bar is None:  # no trade that minute: flat at the last close before it
                prior = [k for k in recorded if k < key]
                close = Decimal(q.minutes[prior[-1]][3]) if prior else q.prev_close
                bar = [close, close, close, close, 0]
            rows.append(
                {
                    "stck_bsop_date": minute.strftime("%Y%m%d"),
                    "stck_cntg_hour": minute.strftime("%H%M%S"),
                    "stck_prpr": plain(bar[3]),
                    "stck_oprc": plain(bar[0]),
                    "stck_hgpr": plain(bar[1]),
                    "stck_lwpr": plain(bar[2]),
                    "cntg_vol": str(bar[4]),
                    "acml_tr_pbmn": "0",
                }
            )
            minute -= timedelta(minutes=1)
        summary = {
            "prdy_vrss": plain(q.price - q.prev_close),
            "prdy_vrss_sign": "3",
            "prdy_ctrt": rate(q.price - q.prev_close, q.prev_close),
            "stck_prdy_clpr": plain(q.prev_close),
            "acml_vol": str(q.volume),
            "acml_tr_pbmn": plain(q.amount.quantize(Decimal(1))),
            "hts_kor_isnm": q.name,
            "stck_prpr": plain(q.price),
        }
    return {"output1": summary, "output2": rows}
