// The order ticket: only the order types and times in force the account's
// broker takes; the API's field errors next to the field; a confirmation above
// the configured notional; one Idempotency-Key per submission (a double click
// sends one order, a retry after a lost answer replays rather than re-sends).
import { ApiError, api, newKey } from "./api.js";
import * as fmt from "./format.js";

const TYPE_LABELS = { market: "Market", limit: "Limit", stop: "Stop", stop_limit: "Stop limit" };
const TIF_LABELS = { gtc: "GTC", day: "Day", ioc: "IOC", fok: "FOK" };
const FIELDS = ["symbol", "order_type", "qty", "price", "stop_price", "time_in_force", "position_id"];

export class Ticket {
  constructor({ form, instruments, quoteOf, confirm, notify, confirmNotional }) {
    this.form = form;
    this.instruments = instruments;
    this.quoteOf = quoteOf;
    this.confirm = confirm;
    this.notify = notify;
    this.confirmNotional = Number(confirmNotional);
    this.side = "buy";
    this.account = null;
    this.funds = null;
    this.positions = [];
    this.inFlight = false;
    this.pending = null; // {body, key}: a submission whose answer never came keeps its key
    this.$ = (name) => form.querySelector(`[name="${name}"]`);
    form.querySelectorAll(".sides button").forEach((b) => b.addEventListener("click", () => this.setSide(b.dataset.side)));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.submit();
    });
    form.addEventListener("input", () => this.update());
    this.$("order_type").addEventListener("change", () => this.update());
  }

  setAccount(account) {
    this.account = account;
    const types = account ? account.order_types : [];
    const tifs = account ? account.times_in_force : [];
    const typeSelect = this.$("order_type");
    const current = typeSelect.value || "limit";
    typeSelect.replaceChildren(...types.map((t) => fmt.el("option", { value: t, text: TYPE_LABELS[t] || t })));
    typeSelect.value = types.includes(current) ? current : types.includes("limit") ? "limit" : types[0] || "";
    const tifSelect = this.$("time_in_force");
    tifSelect.replaceChildren(...tifs.map((t) => fmt.el("option", { value: t, text: TIF_LABELS[t] || t })));
    tifSelect.value = account ? account.default_time_in_force : "";
    this.form.querySelector('[data-for="position_id"]').hidden = !(account && account.position_mode === "hedging");
    this.form.querySelector("#t-submit").disabled = !account || !account.trading_enabled;
    this.update();
  }

  setSymbol(symbol) {
    if (this.$("symbol").value === symbol) return;
    this.$("symbol").value = symbol || "";
    this.$("price").value = "";
    this.$("stop_price").value = "";
    this.clearErrors();
    this.fillPositions();
    this.prefillPrice();
  }

  setFunds(funds) {
    this.funds = funds;
    this.update();
  }

  setPositions(positions) {
    this.positions = positions;
    this.fillPositions();
  }

  fillPositions() {
    const select = this.$("position_id");
    const value = select.value;
    const symbol = this.$("symbol").value;
    const options = [fmt.el("option", { value: "", text: "New position" })];
    for (const p of this.positions.filter((p) => p.symbol === symbol)) {
      options.push(fmt.el("option", { value: String(p.id), text: `#${p.id} ${p.side} ${fmt.qty(p.qty)} @ ${p.avg_price}` }));
    }
    select.replaceChildren(...options);
    if ([...select.options].some((o) => o.value === value)) select.value = value;
  }

  async prefillPrice() {
    const symbol = this.$("symbol").value;
    const q = this.quoteOf(symbol);
    if (!q) return;
    const inst = await this.instruments(symbol);
    const ref = this.side === "buy" ? q.bid ?? q.last : q.ask ?? q.last;
    if (ref && !this.$("price").value) this.$("price").value = Number(ref).toFixed(fmt.decimalsOf(inst && inst.tick_size));
    this.update();
  }

  open(side) {
    document.querySelector("main.dashboard").classList.remove("ticket-closed");
    if (side) this.setSide(side);
    this.$("qty").focus();
    this.$("qty").select();
  }

  close() {
    document.querySelector("main.dashboard").classList.add("ticket-closed");
  }

  setSide(side) {
    this.side = side;
    this.form.querySelectorAll(".sides button").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.side === side)));
    const submit = this.form.querySelector("#t-submit");
    submit.dataset.side = side;
    this.update();
  }

  body() {
    const type = this.$("order_type").value;
    const body = { symbol: this.$("symbol").value, side: this.side, order_type: type, qty: this.$("qty").value.trim() };
    if (type === "limit" || type === "stop_limit") body.price = this.$("price").value.trim();
    if (type === "stop" || type === "stop_limit") body.stop_price = this.$("stop_price").value.trim();
    const tif = this.$("time_in_force").value;
    if (tif) body.time_in_force = tif;
    if (this.account && this.account.position_mode === "hedging" && this.$("position_id").value) body.position_id = Number(this.$("position_id").value);
    return body;
  }

  // Estimated notional in the instrument's currency and in the account's (funds' rates).
  async estimate() {
    const body = this.body();
    const inst = await this.instruments(body.symbol);
    const q = this.quoteOf(body.symbol);
    let px = Number(body.price || body.stop_price || 0);
    if (!px && q) px = Number((this.side === "buy" ? q.ask : q.bid) ?? q.last ?? 0);
    const qty = Number(body.qty);
    if (!inst || !px || !qty || !Number.isFinite(qty)) return null;
    const notional = qty * px * Number(inst.multiplier || 1);
    const rate = this.funds && this.funds.rates ? Number(this.funds.rates[inst.currency]) : inst.currency === (this.account && this.account.base_currency) ? 1 : NaN;
    return { notional, currency: inst.currency, base: Number.isFinite(rate) ? notional * rate : null, baseCurrency: (this.funds && this.funds.currency) || (this.account && this.account.base_currency) };
  }

  async update() {
    const type = this.$("order_type").value;
    this.form.querySelector('[data-for="price"]').hidden = !(type === "limit" || type === "stop_limit");
    this.form.querySelector('[data-for="stop_price"]').hidden = !(type === "stop" || type === "stop_limit");
    const submit = this.form.querySelector("#t-submit");
    const symbol = this.$("symbol").value;
    submit.textContent = `${this.side === "buy" ? "Buy ▲" : "Sell ▼"} ${this.$("qty").value || ""} ${symbol} ${TYPE_LABELS[type] || ""}`.trim();
    const est = await this.estimate();
    document.getElementById("t-notional").textContent = est ? fmt.money(est.notional, est.currency) : "—";
    document.getElementById("t-notional-base").textContent = est && est.base !== null ? fmt.money(est.base, est.baseCurrency) : "—";
    const bp = this.funds ? fmt.money(this.funds.buying_power, this.funds.currency) : "—";
    document.getElementById("t-buying-power").textContent = bp;
  }

  clearErrors() {
    for (const name of FIELDS) {
      const input = this.$(name);
      if (input) {
        input.removeAttribute("aria-invalid");
        input.removeAttribute("aria-describedby");
      }
      const err = document.getElementById(`t-${name}-err`);
      if (err) err.textContent = "";
    }
    document.getElementById("t-form-err").textContent = "";
  }

  showErrors(error) {
    const rest = [];
    for (const [field, messages] of Object.entries(error.fields || {})) {
      const name = field.split(".").pop();
      const err = document.getElementById(`t-${name}-err`);
      const text = Array.isArray(messages) ? messages.join(" ") : String(messages);
      if (err && !err.closest("[hidden]")) {
        err.textContent = text;
        this.$(name).setAttribute("aria-invalid", "true");
        this.$(name).setAttribute("aria-describedby", err.id);
      } else rest.push(`${field}: ${text}`);
    }
    document.getElementById("t-form-err").textContent = [error.message, ...rest].filter(Boolean).join(" ");
  }

  async submit() {
    if (this.inFlight || !this.account) return;
    this.inFlight = true;
    const submit = this.form.querySelector("#t-submit");
    submit.disabled = true;
    this.clearErrors();
    try {
      const body = this.body();
      const est = await this.estimate();
      if (est && est.base !== null && this.confirmNotional > 0 && est.base > this.confirmNotional) {
        const ok = await this.confirm(`${body.side.toUpperCase()} ${body.qty} ${body.symbol} (${TYPE_LABELS[body.order_type]}): estimated ${fmt.money(est.base, est.baseCurrency)}, above your confirmation threshold of ${fmt.money(this.confirmNotional, est.baseCurrency)}.`);
        if (!ok) return;
      }
      const same = this.pending && JSON.stringify(this.pending.body) === JSON.stringify(body);
      const key = same ? this.pending.key : newKey();
      this.pending = { body, key };
      let result;
      try {
        result = await api("POST", `/accounts/${this.account.id}/orders`, body, { idempotencyKey: key });
      } catch (error) {
        if (error instanceof ApiError) {
          this.pending = null; // answered: the next submission is a new one
          this.showErrors(error);
        } else document.getElementById("t-form-err").textContent = "No answer from the server: submit again to retry the same order (it will not be sent twice).";
        return;
      }
      this.pending = null;
      if (result && result.ok === false && result.error) {
        this.showErrors(result.error);
        return;
      }
      this.notify(`Order #${result.order_id} ${body.side} ${fmt.qty(body.qty)} ${body.symbol} accepted (${result.status}).`, "info");
      this.form.dataset.lastOrderId = String(result.order_id);
    } finally {
      this.inFlight = false;
      submit.disabled = !this.account || !this.account.trading_enabled;
    }
  }
}
