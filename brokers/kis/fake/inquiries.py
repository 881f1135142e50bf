"""The fake's answers to KIS's account inquiries (the balance, the day's
orders and fills), built from the Exchange's state as KIS shapes them:
lower-case keys, every value a string, paging through ctx_area_fk100/nk100."""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal
from typing import Any

from brokers.kis import protocol
from brokers.kis.fake.exchange import Account, Exchange, Order, Quote, Rejected
from brokers.kis.fake.records import digits, plain

S = dict[str, str]


def rate(part: Decimal, whole: Decimal) -> str:
    return str((part / whole * 100).quantize(Decimal("0.01"))) if whole else "0.00"


def page(rows: list[Any], *, size: int, tr_cont: str, nk100: str) -> tuple[list[Any], str, str]:
    """This request's page, the response tr_cont (F/M more, D/E last) and the
    next page's ctx_area_nk100 (the offset of its first row)."""
    first = tr_cont != protocol.NEXT_PAGE
    offset = 0
    if not first and nk100.strip():
        if not digits(nk100.strip()) or len(nk100.strip()) > 9:
            raise Rejected("OPSQ2001", "ERROR : INPUT FIELD NAME CTX_AREA_NK100")
        offset = int(nk100.strip())
    chunk = rows[offset : offset + size]
    more = offset + size < len(rows)
    if more:
        return chunk, "F" if first else "M", str(offset + size)
    return chunk, "D" if first else "E", ""


# --- inquire-balance ---------------------------------------------------------------------------


def balance(exchange: Exchange, account: Account, page_size: int, tr_cont: str, ctx: tuple[str, str]) -> tuple[dict[str, Any], str]:
    with exchange.lock:
        holdings = sorted(account.holdings.values(), key=lambda h: h.code)
        rows = []
        pchs_total = evlu_total = Decimal(0)
        for h in holdings:
            quote = exchange.quotes.get(h.code)
            price = quote.price if quote else h.avg_price
            pchs = (h.avg_price * h.qty).quantize(Decimal(1), ROUND_DOWN)
            evlu = price * h.qty
            pchs_total += pchs
            evlu_total += evlu
            sellable = exchange._sellable(account, h.code)  # noqa: SLF001 - same package
            rows.append(
                {
                    "pdno": h.code,
                    "prdt_name": h.name,
                    "trad_dvsn_name": "현금",
                    "bfdy_buy_qty": "0",
                    "bfdy_sll_qty": "0",
                    "thdt_buyqty": "0",
                    "thdt_sll_qty": "0",
                    "hldg_qty": str(h.qty),
                    "ord_psbl_qty": str(max(sellable, 0)),
                    "pchs_avg_pric": format(h.avg_price.quantize(Decimal("0.0001")), "f"),
                    "pchs_amt": plain(pchs),
                    "prpr": plain(price),
                    "evlu_amt": plain(evlu),
                    "evlu_pfls_amt": plain(evlu - pchs),
                    "evlu_pfls_rt": rate(evlu - pchs, pchs),
                    "evlu_erng_rt": rate(evlu - pchs, pchs),
                    "loan_dt": "",
                    "loan_amt": "0",
                    "stln_slng_chgs": "0",
                    "expd_dt": "",
                    "fltt_rt": rate(price - quote.prev_close, quote.prev_close) if quote else "0.00",
                    "bfdy_cprs_icdc": plain(price - quote.prev_close) if quote else "0",
                    "item_mgna_rt_name": "",
                    "grta_rt_name": "",
                    "sbst_pric": "0",
                    "stck_loan_unpr": "0",
                }
            )
        cash = account.cash + sum(o.reserved_cash for o in exchange.orders.values() if o.cano == account.cano)
        summary = {
            "dnca_tot_amt": plain(cash.quantize(Decimal(1), ROUND_DOWN)),
            "nxdy_excc_amt": plain(account.cash.quantize(Decimal(1), ROUND_DOWN)),
            "prvs_rcdl_excc_amt": plain(account.cash.quantize(Decimal(1), ROUND_DOWN)),
            "cma_evlu_amt": "0",
            "bfdy_buy_amt": "0",
            "thdt_buy_amt": "0",
            "nxdy_auto_rdpt_amt": "0",
            "bfdy_sll_amt": "0",
            "thdt_sll_amt": "0",
            "d2_auto_rdpt_amt": "0",
            "bfdy_tlex_amt": "0",
            "thdt_tlex_amt": "0",
            "tot_loan_amt": "0",
            "scts_evlu_amt": plain(evlu_total),
            "tot_evlu_amt": plain(cash.quantize(Decimal(1), ROUND_DOWN) + evlu_total),
            "nass_amt": plain(cash.quantize(Decimal(1), ROUND_DOWN) + evlu_total),
            "fncg_gld_auto_rdpt_yn": "N",
            "pchs_amt_smtl_amt": plain(pchs_total),
            "evlu_amt_smtl_amt": plain(evlu_total),
            "evlu_pfls_smtl_amt": plain(evlu_total - pchs_total),
            "tot_stln_slng_chgs": "0",
            "bfdy_tot_asst_evlu_amt": "0",
            "asst_icdc_amt": "0",
            "asst_icdc_erng_rt": "0.00000000",
        }
    chunk, cont, next_nk = page(rows, size=page_size, tr_cont=tr_cont, nk100=ctx[1])
    body = {
        "ctx_area_fk100": ctx[0] or f"{account.cano}^{account.product_code}^",
        "ctx_area_nk100": next_nk,
        "output1": chunk,
        "output2": [summary],
    }
    return body, cont


# --- inquire-daily-ccld -------------------------------------------------------------------------


def _order_row(order: Order, quote: Quote | None) -> S:
    buy = order.side == protocol.SIDE_BUY
    side_name = ("매수취소" if buy else "매도취소") if order.is_cancel else ("현금매수" if buy else "현금매도")
    return {
        "ord_dt": order.ord_dt,
        "ord_gno_brno": order.orgno,
        "odno": order.odno,
        "orgn_odno": order.orgn_odno,
        "ord_dvsn_name": "시장가" if order.ord_dvsn == protocol.ORD_DVSN_MARKET else "지정가",
        "sll_buy_dvsn_cd": order.side,
        "sll_buy_dvsn_cd_name": side_name,
        "pdno": order.code,
        "prdt_name": quote.name if quote else order.code,
        "ord_qty": str(order.qty),
        "ord_unpr": plain(order.price),
        "ord_tmd": order.ord_tmd,
        "tot_ccld_qty": str(order.filled_qty),
        "avg_prvs": plain(order.avg_price),
        "cncl_yn": "Y" if order.is_cancel else "N",
        "tot_ccld_amt": plain(order.filled_amount),
        "loan_dt": "",
        "ordr_empno": "",
        "ord_dvsn_cd": order.ord_dvsn,
        "cnc_cfrm_qty": str(order.canceled_qty),
        "rmn_qty": str(order.remaining),
        "rjct_qty": str(order.rejected_qty),
        "ccld_cndt_name": "없음",
        "inqr_ip_addr": "",
        "cpbc_ordp_ord_rcit_dvsn_cd": "",
        "cpbc_ordp_infm_mthd_dvsn_cd": "",
        "infm_tmd": "",
        "ctac_tlno": "",
        "prdt_type_cd": "300",
        "excg_dvsn_cd": "02",
        "cpbc_ordp_mtrl_dvsn_cd": "",
        "ord_orgno": order.orgno,
        "rsvn_ord_end_dt": "",
        "excg_id_dvsn_cd": "KRX",
        "stpm_cndt_pric": "0",
        "stpm_efct_occr_dtmd": "",
    }


def daily_ccld(exchange: Exchange, account: Account, query: S, page_size: int, tr_cont: str) -> tuple[dict[str, Any], str]:
    start, end = query.get("INQR_STRT_DT", ""), query.get("INQR_END_DT", "")
    for value in (start, end):
        if not (len(value) == 8 and digits(value)):
            raise Rejected("OPSQ2001", "ERROR : INPUT FIELD NAME INQR_STRT_DT")
    side = query.get("SLL_BUY_DVSN_CD", "00")
    ccld = query.get("CCLD_DVSN", "00")
    odno, pdno = query.get("ODNO", "").strip(), query.get("PDNO", "").strip()
    with exchange.lock:
        orders = [
            o
            for o in exchange.orders.values()
            if o.cano == account.cano
            and o.product_code == account.product_code
            and start <= o.ord_dt <= end
            and side in ("00", "", o.side)
            and (not odno or o.odno == odno)
            and (not pdno or o.code == pdno)
            and (ccld in ("00", "") or (ccld == "01" and o.filled_qty > 0) or (ccld == "02" and o.remaining > 0))
        ]
        orders.sort(key=lambda o: o.odno, reverse=query.get("INQR_DVSN", "00") == "00")
        rows = [_order_row(o, exchange.quotes.get(o.code)) for o in orders]
        filled_qty = sum(o.filled_qty for o in orders)
        filled_amount = sum((o.filled_amount for o in orders), Decimal(0))
        totals = {
            "tot_ord_qty": str(sum(o.qty for o in orders)),
            "tot_ccld_qty": str(filled_qty),
            "tot_ccld_amt": plain(filled_amount),
            "prsm_tlex_smtl": "0",
            "pchs_avg_pric": plain((filled_amount / filled_qty).quantize(Decimal("0.0001"))) if filled_qty else "0",
        }
    chunk, cont, next_nk = page(rows, size=page_size, tr_cont=tr_cont, nk100=query.get("CTX_AREA_NK100", ""))
    fk = query.get("CTX_AREA_FK100", "") or f"{account.cano}^{account.product_code}^"
    return {"ctx_area_fk100": fk, "ctx_area_nk100": next_nk, "output1": chunk, "output2": totals}, cont
