// The watchlist: live last/change/change%/bid/ask from quotes:<symbol>, symbol
// search (/), add, remove and reorder (buttons, Alt+arrows), arrow-key selection.
import { api } from "./api.js";
import * as fmt from "./format.js";

const el = fmt.el;

// The columns a watchlist may choose (the workspaces API's WATCHLIST_COLUMNS).
export const COLUMNS = {
  last: { label: "Last", name: "Last", kind: "price" },
  change: { label: "Chg", name: "Change", kind: "change" },
  change_percent: { label: "Chg%", name: "Change %", kind: "percent" },
  bid: { label: "Bid", name: "Bid", kind: "price" },
  ask: { label: "Ask", name: "Ask", kind: "price" },
  bid_size: { label: "Bid size", name: "Bid size", kind: "qty" },
  ask_size: { label: "Ask size", name: "Ask size", kind: "qty" },
  volume: { label: "Volume", name: "Volume", kind: "qty" },
  open_interest: { label: "OI", name: "Open interest", kind: "qty" },
  day_open: { label: "Open", name: "Day open", kind: "price" },
  day_high: { label: "High", name: "Day high", kind: "price" },
  day_low: { label: "Low", name: "Day low", kind: "price" },
  prev_close: { label: "Prev", name: "Previous close", kind: "price" },
  time: { label: "Time", name: "Quote time", kind: "time" },
  description: { label: "Name", name: "Name", kind: "instrument" },
  exchange: { label: "Exch", name: "Exchange", kind: "instrument" },
  currency: { label: "Ccy", name: "Currency", kind: "instrument" },
};
const DEFAULT_COLUMNS = ["last", "change", "change_percent", "bid", "ask"];

export class Watchlist {
  constructor({ stream, store, instruments, onSelect }) {
    this.stream = stream;
    this.store = store; // {symbols(), add(sym), remove(sym), reorder(list)}
    this.instruments = instruments; // symbol -> Promise<instrument>
    this.onSelect = onSelect;
    this.tbody = document.getElementById("watchlist-rows");
    this.rows = new Map(); // symbol -> {tr, cells, last}
    this.unsubs = new Map();
    this.selected = null;
    this.firstLiveAt = null;
    this.search = new SymbolSearch(document.getElementById("symbol-search"), document.getElementById("search-results"), (s) => this.add(s));
    this.tbody.addEventListener("keydown", (e) => this.onKey(e));
  }

  get symbols() {
    return this.store.symbols();
  }

  get columns() {
    const chosen = (this.store.columns && this.store.columns()) || DEFAULT_COLUMNS;
    const known = chosen.filter((c) => c in COLUMNS);
    return known.length ? known : DEFAULT_COLUMNS;
  }

  drawHead() {
    const head = document.getElementById("watchlist-head");
    const key = this.columns.join(",");
    if (head.dataset.columns === key) return;
    head.dataset.columns = key;
    head.replaceChildren(
      el("th", { scope: "col", text: "Symbol" }),
      ...this.columns.map((c) => el("th", { scope: "col", class: COLUMNS[c].kind === "instrument" ? "" : "num", text: COLUMNS[c].label })),
      el("th", { scope: "col" }, el("span", { class: "sr-only", text: "Actions" })),
    );
    for (const unsub of this.unsubs.values()) unsub();
    this.unsubs.clear();
    this.rows.clear();
  }

  render() {
    this.drawHead();
    const symbols = this.symbols;
    for (const [symbol, unsub] of this.unsubs) {
      if (!symbols.includes(symbol)) {
        unsub();
        this.unsubs.delete(symbol);
        this.rows.delete(symbol);
      }
    }
    this.tbody.replaceChildren();
    for (const symbol of symbols) {
      let row = this.rows.get(symbol);
      if (!row) {
        row = this.makeRow(symbol);
        this.rows.set(symbol, row);
        this.unsubs.set(symbol, this.stream.subscribe(`quotes:${symbol}`, (kind, data) => kind !== "error" && data && this.setQuote(symbol, data)));
      }
      row.tr.setAttribute("aria-selected", String(symbol === this.selected));
      row.tr.tabIndex = symbol === this.selected ? 0 : -1;
      this.tbody.append(row.tr);
    }
    if (!symbols.length) this.tbody.append(el("tr", { class: "empty" }, el("td", { colspan: this.columns.length + 2, class: "muted", text: "Empty: press / to add a symbol" })));
    else if (!this.selected || !symbols.includes(this.selected)) this.select(symbols[0], { focus: false });
  }

  makeRow(symbol) {
    const cells = { sym: el("td", { class: "sym", text: symbol, title: symbol }) };
    for (const c of this.columns) cells[c] = el("td", { class: `${COLUMNS[c].kind === "instrument" ? "" : "num "}col-${c}${c === "last" ? " last" : ""}`, text: "—" });
    this.instruments(symbol).then((inst) => {
      for (const c of ["description", "exchange", "currency"]) if (cells[c] && inst) cells[c].textContent = inst[c] || "";
    });
    const button = (label, text, fn) => el("button", { type: "button", class: "small icon", "aria-label": `${label} ${symbol}`, title: label, text, onclick: (e) => (e.stopPropagation(), fn()) });
    const actions = el("td", { class: "actions" }, button("Move up", "↑", () => this.move(symbol, -1)), button("Move down", "↓", () => this.move(symbol, 1)), button("Remove", "✕", () => this.remove(symbol)));
    const tr = el("tr", { "data-symbol": symbol, tabindex: "-1" }, ...Object.values(cells), actions);
    tr.addEventListener("click", () => this.select(symbol));
    return { tr, cells, last: null };
  }

  async setQuote(symbol, q) {
    const row = this.rows.get(symbol);
    if (!row) return;
    const inst = await this.instruments(symbol);
    const tick = inst ? inst.tick_size : null;
    const last = q.last ?? null;
    if (row.last !== null && last !== null && Number(last) !== Number(row.last)) {
      const cls = Number(last) > Number(row.last) ? "flash-up" : "flash-down";
      if (row.cells.last) {
        row.cells.last.classList.remove("flash-up", "flash-down");
        void row.cells.last.offsetWidth;
        row.cells.last.classList.add(cls);
      }
      row.ticks = (row.ticks || 0) + 1;
      row.tr.dataset.ticks = String(row.ticks);
    }
    row.last = last;
    row.quote = q;
    for (const c of this.columns) {
      const cell = row.cells[c];
      const kind = COLUMNS[c].kind;
      if (kind === "price") cell.textContent = fmt.price(q[c], tick);
      else if (kind === "qty") cell.textContent = fmt.qty(q[c]);
      else if (kind === "time") cell.textContent = fmt.time(q.time);
      else if (kind === "change" || kind === "percent") {
        const v = kind === "change" ? fmt.signed(q[c], fmt.decimalsOf(tick)) : fmt.signed(q[c], 2, "%");
        cell.textContent = v.text;
        cell.className = `num col-${c} ${v.cls}`;
      }
    }
    row.tr.dataset.last = last ?? "";
    row.tr.classList.toggle("stale", Boolean(q.stale));
    if (last !== null && this.firstLiveAt === null) {
      this.firstLiveAt = performance.now();
      document.body.dataset.firstPriceMs = String(Math.round(this.firstLiveAt));
    }
    for (const fn of this.quoteListeners || []) fn(symbol, q);
  }

  quote(symbol) {
    const row = this.rows.get(symbol);
    return row ? row.quote : null;
  }

  onQuote(fn) {
    (this.quoteListeners ||= []).push(fn);
  }

  select(symbol, { focus = true } = {}) {
    this.selected = symbol;
    for (const [s, row] of this.rows) {
      row.tr.setAttribute("aria-selected", String(s === symbol));
      row.tr.tabIndex = s === symbol ? 0 : -1;
    }
    const row = this.rows.get(symbol);
    if (focus && row) row.tr.focus();
    this.onSelect(symbol);
  }

  onKey(event) {
    const symbols = this.symbols;
    const index = symbols.indexOf(this.selected);
    if (index < 0) return;
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      const step = event.key === "ArrowDown" ? 1 : -1;
      if (event.altKey) this.move(this.selected, step);
      else if (symbols[index + step]) this.select(symbols[index + step]);
    } else if (event.key === "Delete" || event.key === "Backspace") {
      event.preventDefault();
      this.remove(this.selected);
    }
  }

  async add(symbol) {
    if (!this.symbols.includes(symbol)) {
      await this.store.add(symbol);
      this.render();
    }
    this.select(symbol);
  }

  async remove(symbol) {
    const symbols = this.symbols;
    const index = symbols.indexOf(symbol);
    await this.store.remove(symbol);
    if (this.selected === symbol) this.selected = symbols[index + 1] || symbols[index - 1] || null;
    this.render();
    if (this.selected) this.select(this.selected);
  }

  async move(symbol, step) {
    const symbols = [...this.symbols];
    const index = symbols.indexOf(symbol);
    const to = index + step;
    if (index < 0 || to < 0 || to >= symbols.length) return;
    [symbols[index], symbols[to]] = [symbols[to], symbols[index]];
    await this.store.reorder(symbols);
    this.render();
    this.rows.get(symbol)?.tr.focus();
  }
}

class SymbolSearch {
  constructor(input, list, onPick) {
    this.input = input;
    this.list = list;
    this.onPick = onPick;
    this.items = [];
    this.active = -1;
    this.seq = 0;
    input.addEventListener("input", () => {
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.query(), 120);
    });
    input.addEventListener("keydown", (e) => this.onKey(e));
    input.addEventListener("blur", () => setTimeout(() => this.close(), 150));
  }

  focus() {
    this.input.focus();
    this.input.select();
  }

  async query() {
    const text = this.input.value.trim();
    const seq = ++this.seq;
    if (!text) return this.close();
    let items = [];
    try {
      items = await api("GET", `/datafeed/search?query=${encodeURIComponent(text)}&limit=12`);
    } catch {
      items = [];
    }
    if (seq !== this.seq) return;
    this.items = items;
    this.active = items.length ? 0 : -1;
    this.draw();
  }

  draw() {
    this.list.replaceChildren(
      ...this.items.map((item, i) =>
        el(
          "li",
          { role: "option", id: `search-opt-${i}`, "aria-selected": String(i === this.active), onmousedown: (e) => (e.preventDefault(), this.pick(i)) },
          el("span", { class: "sym", text: item.symbol }),
          el("span", { class: "muted", text: `${item.description || ""} · ${item.exchange || ""}` }),
        ),
      ),
    );
    if (!this.items.length) this.list.append(el("li", { class: "muted", text: "No match" }));
    this.list.hidden = false;
    this.input.setAttribute("aria-expanded", "true");
    if (this.active >= 0) this.input.setAttribute("aria-activedescendant", `search-opt-${this.active}`);
  }

  close() {
    this.list.hidden = true;
    this.input.setAttribute("aria-expanded", "false");
    this.input.removeAttribute("aria-activedescendant");
  }

  pick(i) {
    const item = this.items[i];
    if (!item) return;
    this.input.value = "";
    this.items = [];
    this.close();
    this.onPick(item.symbol);
  }

  onKey(event) {
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      if (!this.items.length) return;
      this.active = (this.active + (event.key === "ArrowDown" ? 1 : -1) + this.items.length) % this.items.length;
      this.draw();
    } else if (event.key === "Enter") {
      event.preventDefault();
      this.pick(this.active);
    } else if (event.key === "Escape") {
      this.input.value = "";
      this.close();
      this.input.blur();
    }
  }
}
