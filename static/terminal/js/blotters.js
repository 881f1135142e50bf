// Working orders, positions, order history, fills, holdings and funds of the
// selected account; live from orders:/positions:/funds: (a snapshot replaces
// the state, so a re-subscribe after a gap or a reconnect re-snapshots).
import { ApiError, api, newKey } from "./api.js";
import * as fmt from "./format.js";

const el = fmt.el;
const FINAL = new Set(["filled", "canceled", "rejected", "expired"]);

export class Blotters {
  constructor({ stream, instruments, confirm, notify, onFill, onPositions, onFunds, onTab }) {
    this.stream = stream;
    this.instruments = instruments;
    this.confirm = confirm;
    this.notify = notify;
    this.onFill = onFill;
    this.onPositions = onPositions;
    this.onFunds = onFunds;
    this.onTab = onTab || (() => {});
    this.orders = new Map();
    this.positions = new Map();
    this.editing = null;
    this.account = null;
    this.unsubs = [];
    this.ticks = new Map();
    this.initTabs();
    document.getElementById("cancel-all").addEventListener("click", () => this.cancelAll());
    document.getElementById("flatten-all").addEventListener("click", () => this.flattenAll());
  }

  initTabs() {
    const tabs = [...document.querySelectorAll('#blotter-panel [role="tab"]')];
    const show = (tab) => {
      for (const t of tabs) {
        const on = t === tab;
        t.setAttribute("aria-selected", String(on));
        t.tabIndex = on ? 0 : -1;
        document.getElementById(t.getAttribute("aria-controls")).hidden = !on;
      }
      this.onTab(tab.id.replace(/^tab-/, ""));
      if (tab.id === "tab-history") this.loadHistory();
      if (tab.id === "tab-fills") this.loadFills();
      if (tab.id === "tab-holdings") this.loadHoldings();
    };
    tabs.forEach((tab, i) => {
      tab.addEventListener("click", () => show(tab));
      tab.addEventListener("keydown", (e) => {
        if (e.key !== "ArrowRight" && e.key !== "ArrowLeft") return;
        const next = tabs[(i + (e.key === "ArrowRight" ? 1 : -1) + tabs.length) % tabs.length];
        next.focus();
        show(next);
      });
    });
    this.showTab = (id) => show(document.getElementById(id));
  }

  setAccount(account) {
    this.unsubs.forEach((u) => u());
    this.unsubs = [];
    this.account = account;
    this.orders.clear();
    this.positions.clear();
    this.drawOrders();
    this.drawPositions();
    this.drawFunds(null);
    if (!account) return;
    const id = account.id;
    this.unsubs.push(this.stream.subscribe(`orders:${id}`, (kind, data) => this.onOrders(kind, data)));
    this.unsubs.push(this.stream.subscribe(`positions:${id}`, (kind, data) => this.onPositionsFrame(kind, data)));
    this.unsubs.push(this.stream.subscribe(`funds:${id}`, (kind, data) => kind !== "error" && this.drawFunds(data)));
    this.loadHistory();
    this.loadFills();
  }

  onOrders(kind, data) {
    if (kind === "snapshot") {
      this.orders = new Map(data.map((o) => [o.id, o]));
      this.loadHistory();
      this.loadFills();
    } else if (kind === "update") {
      const before = this.orders.get(data.id);
      if (FINAL.has(data.status)) this.orders.delete(data.id);
      else this.orders.set(data.id, data);
      this.noticeFor(before, data);
      if (FINAL.has(data.status)) this.loadHistory();
      if (Number(data.filled_qty) > Number(before ? before.filled_qty : 0)) {
        this.loadFills();
        this.onFill(data);
      }
    } else return;
    this.drawOrders();
  }

  noticeFor(before, order) {
    if (before && before.status === order.status && before.filled_qty === order.filled_qty) return;
    const what = `#${order.id} ${order.side} ${fmt.qty(order.qty)} ${order.symbol}`;
    if (order.status === "filled") this.notify(`Filled ${what} @ ${order.avg_fill_price}`, "ok");
    else if (order.status === "partially_filled") this.notify(`Partly filled ${what}: ${fmt.qty(order.filled_qty)} @ ${order.avg_fill_price}`, "ok");
    else if (order.status === "rejected") this.notify(`Rejected ${what}: ${order.status_message || "no reason given"}`, "bad");
  }

  onPositionsFrame(kind, data) {
    if (kind === "snapshot") this.positions = new Map(data.map((p) => [p.id, p]));
    else if (kind === "update") {
      if (data.status !== "open" || Number(data.qty) === 0) this.positions.delete(data.id);
      else this.positions.set(data.id, data);
    } else return;
    this.drawPositions();
    this.onPositions([...this.positions.values()]);
  }

  async tickOf(symbol) {
    const inst = await this.instruments(symbol);
    return inst ? inst.tick_size : null;
  }

  drawOrders() {
    const tbody = document.getElementById("working-rows");
    const orders = [...this.orders.values()].sort((a, b) => b.id - a.id);
    document.getElementById("count-working").textContent = String(orders.length);
    if (!orders.length) return tbody.replaceChildren(el("tr", { class: "empty" }, el("td", { colspan: 11, text: "No working orders" })));
    tbody.replaceChildren(...orders.map((o) => this.orderRow(o)));
  }

  orderRow(o) {
    const editing = this.editing === o.id;
    const sideCell = el("td", { class: `side-${o.side}`, text: o.side === "buy" ? "▲ Buy" : "▼ Sell" });
    const input = (name, value, label) => el("input", { name, value: value ?? "", "aria-label": `${label} of order ${o.id}`, inputmode: "decimal", "data-order": o.id });
    const qtyCell = el("td", { class: "num" }, editing ? input("qty", o.qty, "New quantity") : fmt.qty(o.qty));
    const priceCell = el("td", { class: "num" }, editing && o.price !== null ? input("price", o.price, "New price") : o.price ?? "—");
    const stopCell = el("td", { class: "num" }, editing && o.stop_price !== null ? input("stop_price", o.stop_price, "New stop price") : o.stop_price ?? "—");
    const actions = el("td", { class: "actions" });
    const canModify = this.account && this.account.supports_modify && ["new", "partially_filled"].includes(o.status);
    if (editing) {
      actions.append(
        el("button", { type: "button", class: "small primary", text: "Save", onclick: () => this.saveChange(o) }),
        el("button", { type: "button", class: "small", text: "Discard", onclick: () => ((this.editing = null), this.drawOrders()) }),
      );
    } else {
      if (canModify) actions.append(el("button", { type: "button", class: "small", text: "Modify", "aria-label": `Modify order ${o.id}`, onclick: () => this.edit(o.id) }));
      actions.append(el("button", { type: "button", class: "small danger", text: "Cancel", "aria-label": `Cancel order ${o.id}`, onclick: () => this.cancel(o) }));
    }
    const err = el("p", { class: "field-error", id: `order-${o.id}-err` });
    const tr = el(
      "tr",
      { "data-order-id": o.id, "data-status": o.status },
      el("td", { class: "num", text: fmt.time(o.created_at) }),
      el("td", { text: o.symbol }),
      sideCell,
      el("td", { text: o.order_type }),
      qtyCell,
      el("td", { class: "num", text: fmt.qty(o.filled_qty) }),
      priceCell,
      stopCell,
      el("td", { text: o.time_in_force }),
      el("td", { text: o.status }),
      actions,
    );
    actions.append(err);
    return tr;
  }

  edit(id) {
    this.editing = id;
    this.drawOrders();
    document.querySelector(`#working-rows input[data-order="${id}"]`)?.focus();
  }

  async saveChange(o) {
    const row = document.querySelector(`#working-rows tr[data-order-id="${o.id}"]`);
    const body = {};
    for (const input of row.querySelectorAll("input")) if (input.value.trim() !== String(o[input.name] ?? "")) body[input.name] = input.value.trim();
    if (!Object.keys(body).length) {
      this.editing = null;
      return this.drawOrders();
    }
    try {
      await api("POST", `/orders/${o.id}/change`, body);
      this.editing = null;
      this.notify(`Change of #${o.id} sent`, "info");
      this.drawOrders();
    } catch (error) {
      const msg = error instanceof ApiError ? [error.message, ...Object.entries(error.fields).map(([f, m]) => `${f}: ${[].concat(m).join(" ")}`)].join(" ") : String(error);
      const err = document.getElementById(`order-${o.id}-err`);
      if (err) err.textContent = msg;
      for (const field of Object.keys(error.fields || {})) row.querySelector(`input[name="${field}"]`)?.setAttribute("aria-invalid", "true");
    }
  }

  async cancel(o) {
    try {
      await api("POST", `/orders/${o.id}/cancel`, {});
    } catch (error) {
      this.notify(`Cancel of #${o.id} failed: ${error.message}`, "bad");
    }
  }

  async cancelAll() {
    if (!this.account || !this.orders.size) return;
    if (!(await this.confirm(`Cancel all ${this.orders.size} working orders of account #${this.account.id}?`))) return;
    try {
      await api("POST", `/accounts/${this.account.id}/cancel-all`, {});
    } catch (error) {
      this.notify(`Cancel all failed: ${error.message}`, "bad");
    }
  }

  async flattenAll() {
    if (!this.account) return;
    if (!(await this.confirm(`Flatten account #${this.account.id}: cancel every working order and close all ${this.positions.size} positions at market?`))) return;
    try {
      await api("POST", `/accounts/${this.account.id}/flatten`, {});
      this.notify("Flatten sent", "info");
    } catch (error) {
      this.notify(`Flatten failed: ${error.message}${error.fields && error.fields.symbols ? ` (${[].concat(error.fields.symbols).join(", ")})` : ""}`, "bad");
    }
  }

  async closePosition(p) {
    try {
      const result = await api("POST", "/oms/commands", { account_id: this.account.id, command: "close_position", request_id: newKey().slice(0, 32), payload: { position_id: p.id } });
      const r = Array.isArray(result) ? result[0] : result;
      if (r && r.ok === false) this.notify(`Close of ${p.symbol} refused: ${(r.error && r.error.message) || "error"}`, "bad");
      else this.notify(`Closing ${p.symbol} (${fmt.qty(p.qty)})`, "info");
    } catch (error) {
      this.notify(`Close of ${p.symbol} failed: ${error.message}`, "bad");
    }
  }

  drawPositions() {
    const tbody = document.getElementById("positions-rows");
    const positions = [...this.positions.values()].sort((a, b) => a.id - b.id);
    document.getElementById("count-positions").textContent = String(positions.length);
    if (!positions.length) return tbody.replaceChildren(el("tr", { class: "empty" }, el("td", { colspan: 9, text: "No open positions" })));
    tbody.replaceChildren(
      ...positions.map((p) => {
        const upnl = fmt.signed(p.unrealized_pnl, fmt.minorUnits(p.currency));
        const rpnl = fmt.signed(p.realized_pnl, fmt.minorUnits(p.currency));
        const ubase = fmt.signed(p.unrealized_pnl_base, fmt.minorUnits(p.base_currency));
        return el(
          "tr",
          { "data-position-id": p.id, "data-symbol": p.symbol },
          el("td", { text: p.symbol }),
          el("td", { class: p.side === "long" ? "side-buy" : "side-sell", text: p.side === "long" ? "▲ Long" : "▼ Short" }),
          el("td", { class: "num", text: fmt.qty(p.qty) }),
          el("td", { class: "num", text: p.avg_price }),
          el("td", { class: "num", text: p.last_price ?? "—" }),
          el("td", { class: `num upnl ${upnl.cls}`, text: `${upnl.text} ${p.currency}` }),
          el("td", { class: `num ${rpnl.cls}`, text: `${rpnl.text} ${p.currency}` }),
          el("td", { class: `num ${ubase.cls}`, text: p.unrealized_pnl_base === null ? "—" : `${ubase.text} ${p.base_currency}` }),
          el("td", {}, el("button", { type: "button", class: "small danger", text: "Close", "aria-label": `Close position ${p.symbol} ${p.id}`, onclick: () => this.closePosition(p) })),
        );
      }),
    );
  }

  drawFunds(funds) {
    this.funds = funds;
    this.onFunds(funds);
    const box = document.getElementById("funds");
    if (!funds) return box.replaceChildren(el("p", { class: "muted", style: "padding:8px", text: "No funds reported yet." }));
    const cell = (label, value) => el("div", {}, el("dt", { text: label }), el("dd", { text: value }));
    const totals = el(
      "dl",
      { class: "funds-grid", "aria-label": `Totals in ${funds.currency}` },
      cell(`Equity (${funds.currency})`, fmt.money(funds.equity, funds.currency)),
      cell("Cash", fmt.money(funds.cash, funds.currency)),
      cell("Buying power", fmt.money(funds.buying_power, funds.currency)),
      cell("Margin used", fmt.money(funds.margin_used, funds.currency)),
      cell("Margin available", fmt.money(funds.margin_available, funds.currency)),
    );
    const balances = el(
      "table",
      { class: "blotter", "aria-label": "Balances per currency" },
      el("thead", {}, el("tr", {}, ...["Currency", "Cash", "Available", `Rate to ${funds.currency}`].map((h, i) => el("th", { scope: "col", class: i ? "num" : "", text: h })))),
      el(
        "tbody",
        { id: "balances-rows" },
        ...(funds.balances || []).map((b) =>
          el("tr", { "data-currency": b.currency }, el("td", { text: b.currency }), el("td", { class: "num cash", text: fmt.money(b.cash, b.currency) }), el("td", { class: "num", text: fmt.money(b.available, b.currency) }), el("td", { class: "num", text: (funds.rates || {})[b.currency] ?? "—" })),
        ),
      ),
    );
    box.replaceChildren(totals, balances);
    box.dataset.cash = funds.cash;
  }

  async loadHistory() {
    if (!this.account) return;
    const id = this.account.id;
    let page;
    try {
      page = await api("GET", `/oms/orders/history?account_id=${id}&limit=100`);
    } catch {
      return;
    }
    if (!this.account || this.account.id !== id) return;
    const tbody = document.getElementById("history-rows");
    const rows = page.results || [];
    if (!rows.length) return tbody.replaceChildren(el("tr", { class: "empty" }, el("td", { colspan: 10, text: "No orders yet" })));
    tbody.replaceChildren(
      ...rows.map((o) =>
        el(
          "tr",
          { "data-order-id": o.id, "data-status": o.status },
          el("td", { class: "num", text: fmt.time(o.created_at, { date: true }) }),
          el("td", { text: o.symbol }),
          el("td", { class: `side-${o.side}`, text: o.side === "buy" ? "▲ Buy" : "▼ Sell" }),
          el("td", { text: o.order_type }),
          el("td", { class: "num", text: fmt.qty(o.qty) }),
          el("td", { class: "num", text: fmt.qty(o.filled_qty) }),
          el("td", { class: "num", text: o.price ?? "—" }),
          el("td", { class: "num", text: o.avg_fill_price ?? "—" }),
          el("td", { text: o.status }),
          el("td", { class: o.status === "rejected" ? "down" : "muted", text: o.status_message || "" }),
        ),
      ),
    );
  }

  async loadFills() {
    if (!this.account) return;
    const id = this.account.id;
    let page;
    try {
      page = await api("GET", `/oms/deals?account_id=${id}&limit=100`);
    } catch {
      return;
    }
    if (!this.account || this.account.id !== id) return;
    const tbody = document.getElementById("fills-rows");
    const rows = page.results || [];
    if (!rows.length) return tbody.replaceChildren(el("tr", { class: "empty" }, el("td", { colspan: 8, text: "No fills yet" })));
    tbody.replaceChildren(
      ...rows.map((d) => {
        const pnl = fmt.signed(d.realized_pnl, fmt.minorUnits(d.currency));
        return el(
          "tr",
          { "data-deal-id": d.id },
          el("td", { class: "num", text: fmt.time(d.executed_at, { date: true }) }),
          el("td", { text: d.symbol }),
          el("td", { class: `side-${d.side}`, text: d.side === "buy" ? "▲ Buy" : "▼ Sell" }),
          el("td", { class: "num", text: fmt.qty(d.qty) }),
          el("td", { class: "num", text: d.price }),
          el("td", { class: "num", text: d.fee === null ? "—" : `${d.fee} ${d.fee_currency || ""}` }),
          el("td", { class: `num ${pnl.cls}`, text: d.realized_pnl === null ? "—" : `${pnl.text} ${d.currency}` }),
          el("td", { class: "num", text: d.order_id ? `#${d.order_id}` : "—" }),
        );
      }),
    );
  }

  async loadHoldings() {
    if (!this.account) return;
    let rows = [];
    try {
      const body = await api("GET", `/accounts/${this.account.id}/holdings`);
      rows = body.results || [];
    } catch {
      rows = [];
    }
    const tbody = document.getElementById("holdings-rows");
    if (!rows.length) return tbody.replaceChildren(el("tr", { class: "empty" }, el("td", { colspan: 6, text: "No holdings" })));
    tbody.replaceChildren(
      ...rows.map((h) => {
        const value = h.last_price === null ? null : Number(h.qty) * Number(h.last_price);
        // An unknown average cost (null: the broker cannot tell what the holding cost) has no P&L.
        const pnl = fmt.signed(h.last_price === null || h.avg_price === null ? null : (Number(h.last_price) - Number(h.avg_price)) * Number(h.qty), 2);
        return el(
          "tr",
          {},
          el("td", { text: h.symbol }),
          el("td", { class: "num", text: fmt.qty(h.qty) }),
          el("td", { class: "num", text: h.avg_price ?? "—" }),
          el("td", { class: "num", text: h.last_price ?? "—" }),
          el("td", { class: "num", text: value === null ? "—" : fmt.qty(value.toFixed(2)) }),
          el("td", { class: `num ${pnl.cls}`, text: pnl.text }),
        );
      }),
    );
  }
}
