// The dashboard: wires the watchlist, chart, ticket and blotters to one
// WebSocket and the workspace (layout and watchlist saved through the API).
import { ApiError, api } from "./api.js";
import { Blotters } from "./blotters.js";
import { Chart } from "./chart.js";
import * as fmt from "./format.js";
import { BlotterColumns, ColumnPicker, PanelSizes } from "./layout.js";
import { Ticket } from "./ticket.js";
import { COLUMNS, Watchlist } from "./watchlist.js";
import { Stream } from "./ws.js";

const config = JSON.parse(document.getElementById("dashboard-config").textContent);
const DEFAULT_SYMBOLS = ["AAPL", "MSFT", "BTC/USDT", "ETH/USDT", "NSE:INFY", "005930"];
const path = (symbol) => encodeURIComponent(symbol).replace(/%2F/g, "/").replace(/%3A/g, ":");
fmt.setTimezone(config.user.timezone);

// --- instruments (tick size, currency, multiplier), fetched once per symbol -------
const instrumentCache = new Map(Object.entries(config.instruments || {}).map(([symbol, inst]) => [symbol, Promise.resolve(inst)]));
function instruments(symbol) {
  if (!symbol) return Promise.resolve(null);
  if (!instrumentCache.has(symbol)) instrumentCache.set(symbol, api("GET", `/symbols/${path(symbol)}`).catch(() => null));
  return instrumentCache.get(symbol);
}

// --- workspace: the layout and the watchlist, through the workspaces API -------------
class Workspace {
  constructor() {
    this.workspace = null;
    this.watchlist = null;
    this.local = false;
  }

  async load() {
    try {
      // The page carries the default workspace and its watchlist; the API is asked only without them.
      this.workspace = config.workspace || (await api("GET", "/workspaces/default"));
      const id = this.workspace.layout && this.workspace.layout.watchlist_id;
      this.watchlist = config.watchlist || (id ? await api("GET", `/watchlists/${id}`) : { id: null, symbols: [...DEFAULT_SYMBOLS] });
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 404) console.warn("workspace API unavailable", error);
      // Without the workspaces API the page keeps its layout in this browser.
      this.local = true;
      const saved = JSON.parse(localStorage.getItem("terminal.workspace") || "null");
      this.workspace = saved || { id: null, layout: {} };
      this.watchlist = { id: null, symbols: (saved && saved.symbols) || [...DEFAULT_SYMBOLS] };
    }
    return this;
  }

  get layout() {
    return this.workspace.layout || {};
  }

  symbols() {
    return this.watchlist.symbols;
  }

  columns() {
    return this.watchlist.columns;
  }

  saveLocal() {
    if (this.local) localStorage.setItem("terminal.workspace", JSON.stringify({ ...this.workspace, symbols: this.watchlist.symbols }));
  }

  async add(symbol) {
    if (this.watchlist.id) this.watchlist = await api("POST", `/watchlists/${this.watchlist.id}/items`, { symbol }).then(() => api("GET", `/watchlists/${this.watchlist.id}`));
    else this.watchlist.symbols = [...this.watchlist.symbols, symbol];
    this.saveLocal();
  }

  async remove(symbol) {
    if (this.watchlist.id) await api("DELETE", `/watchlists/${this.watchlist.id}/items/${path(symbol)}`);
    this.watchlist.symbols = this.watchlist.symbols.filter((s) => s !== symbol);
    this.saveLocal();
  }

  async reorder(symbols) {
    this.watchlist.symbols = symbols;
    if (this.watchlist.id) await api("PUT", `/watchlists/${this.watchlist.id}/items`, { symbols });
    this.saveLocal();
  }

  async setColumns(columns) {
    if (this.watchlist.id) this.watchlist = await api("PATCH", `/watchlists/${this.watchlist.id}`, { columns });
    else this.watchlist.columns = columns;
    this.saveLocal();
  }

  saveLayout(changes) {
    const layout = this.workspace.layout || {};
    if (Object.entries(changes).every(([k, v]) => layout[k] === v)) return;
    Object.assign((this.workspace.layout ||= {}), changes);
    this.saveLocal();
    if (this.local || !this.workspace.id) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => api("PATCH", `/workspaces/${this.workspace.id}`, { layout: this.workspace.layout }).catch((e) => console.warn("layout not saved", e)), 400);
  }
}

// --- notices and confirmations --------------------------------------------------------
function notify(text, kind = "info") {
  const box = document.getElementById("notices");
  const node = fmt.el("div", { class: `notice ${kind}`, text });
  box.append(node);
  while (box.children.length > 5) box.firstChild.remove();
  setTimeout(() => node.remove(), kind === "bad" ? 12000 : 6000);
}

function confirmDialog(text) {
  const dialog = document.getElementById("confirm-dialog");
  document.getElementById("confirm-text").textContent = text;
  return new Promise((resolve) => {
    const done = (ok) => {
      dialog.close();
      yes.removeEventListener("click", onYes);
      no.removeEventListener("click", onNo);
      dialog.removeEventListener("cancel", onNo);
      resolve(ok);
    };
    const yes = document.getElementById("confirm-yes");
    const no = document.getElementById("confirm-no");
    const onYes = () => done(true);
    const onNo = () => done(false);
    yes.addEventListener("click", onYes);
    no.addEventListener("click", onNo);
    dialog.addEventListener("cancel", onNo);
    dialog.showModal();
    no.focus();
  });
}

// --- wiring ------------------------------------------------------------------------------
const conn = document.getElementById("conn");
const stream = new Stream(config.ws_path, (state) => {
  conn.dataset.state = state;
  conn.textContent = state === "live" ? "live" : state === "reconnecting" ? "reconnecting…" : state;
  conn.title = state === "live" ? "Connected to the live stream" : "The live stream is down: reconnecting by itself";
});
window.terminalStream = stream; // for the browser tests and the console
stream.start(); // connect while the rest of the page sets up

const workspace = await new Workspace().load();
const accounts = config.accounts;
const accountPicker = document.getElementById("account-picker");
const state = {
  account: accounts.find((a) => a.id === workspace.layout.account_id) || accounts[0] || null,
  symbol: workspace.layout.symbol || null,
  resolution: config.resolutions.includes(workspace.layout.resolution) ? workspace.layout.resolution : "1",
};

// Layout: panel sizes (splitters) and the tables' columns (pickers), saved in the workspace.
new PanelSizes({ main: document.querySelector("main.dashboard"), panels: workspace.layout.panels, onChange: (panels) => workspace.saveLayout({ panels }) });
const blotterColumns = new BlotterColumns({ columns: workspace.layout.columns, onChange: (columns) => workspace.saveLayout({ columns }) });
blotterColumns.showTable("working");

const chart = new Chart({ container: document.getElementById("chart"), stream, instruments });
const ticket = new Ticket({
  form: document.getElementById("ticket"),
  instruments,
  quoteOf: (symbol) => watchlist.quote(symbol),
  confirm: confirmDialog,
  notify,
  confirmNotional: config.confirm_notional,
});
const blotters = new Blotters({
  stream,
  instruments,
  confirm: confirmDialog,
  notify,
  onFill: (order) => order.symbol === state.symbol && chart.refreshMarkers(),
  onPositions: (positions) => ticket.setPositions(positions),
  onFunds: (funds) => ticket.setFunds(funds),
  onTab: (table) => blotterColumns.showTable(table),
});
const watchlist = new Watchlist({
  stream,
  store: workspace,
  instruments,
  onSelect: (symbol) => selectSymbol(symbol),
});
// The watchlist's columns (its own, through the watchlists API).
const watchlistColumns = new ColumnPicker({
  details: document.getElementById("watchlist-columns"),
  label: "Watchlist",
  onChange: (columns) =>
    workspace
      .setColumns(columns)
      .then(() => watchlist.render())
      .catch((error) => {
        notify(`Columns not saved: ${error.message}`, "bad");
        watchlistColumns.show(Object.entries(COLUMNS).map(([id, c]) => [id, c.name]), watchlist.columns);
      }),
});
watchlistColumns.show(Object.entries(COLUMNS).map(([id, c]) => [id, c.name]), watchlist.columns);

const DETAIL = [
  ["Open", "day_open", "price"],
  ["High", "day_high", "price"],
  ["Low", "day_low", "price"],
  ["Prev close", "prev_close", "price"],
  ["Bid size", "bid_size", "qty"],
  ["Ask size", "ask_size", "qty"],
  ["Volume", "volume", "qty"],
  ["Updated", "time", "time"],
];
function drawDetail(symbol, q, inst) {
  const tick = inst && inst.tick_size;
  document.getElementById("detail-title").textContent = symbol;
  document.getElementById("detail-description").textContent = inst ? `${inst.description} · ${inst.exchange} · ${inst.currency} · tick ${inst.tick_size} · lot ${inst.lot_size}` : "";
  document.getElementById("detail").replaceChildren(
    ...DETAIL.map(([label, key, kind]) =>
      fmt.el("div", {}, fmt.el("dt", { text: label }), fmt.el("dd", { text: !q ? "—" : kind === "price" ? fmt.price(q[key], tick) : kind === "qty" ? fmt.qty(q[key]) : fmt.time(q.time) })),
    ),
  );
}

watchlist.onQuote((symbol, q) => {
  if (symbol !== state.symbol) return;
  instruments(symbol).then((inst) => drawDetail(symbol, q, inst));
  if (!document.getElementById("t-price").value) ticket.prefillPrice();
  instruments(symbol).then((inst) => {
    const tick = inst && inst.tick_size;
    const chg = fmt.signed(q.change_percent, 2, "%");
    const quote = document.getElementById("chart-quote");
    quote.replaceChildren(
      fmt.el("span", { text: `${fmt.price(q.last, tick)} ` }),
      fmt.el("span", { class: chg.cls, text: chg.text }),
      fmt.el("span", { class: "muted", text: `  bid ${fmt.price(q.bid, tick)} · ask ${fmt.price(q.ask, tick)}` }),
    );
  });
});

function selectSymbol(symbol) {
  if (!symbol) return;
  state.symbol = symbol;
  document.getElementById("chart-symbol").textContent = symbol;
  ticket.setSymbol(symbol);
  chart.show(symbol, state.resolution, state.account && state.account.id);
  workspace.saveLayout({ symbol });
}

function selectResolution(resolution) {
  state.resolution = resolution;
  for (const b of document.querySelectorAll("#resolutions button")) b.setAttribute("aria-pressed", String(b.dataset.resolution === resolution));
  chart.show(state.symbol, resolution, state.account && state.account.id);
  workspace.saveLayout({ resolution });
}

function selectAccount(account) {
  state.account = account;
  accountPicker.value = account ? String(account.id) : "";
  ticket.setAccount(account);
  blotters.setAccount(account);
  chart.show(state.symbol, state.resolution, account && account.id);
  workspace.saveLayout({ account_id: account ? account.id : null });
}

accountPicker.addEventListener("change", () => selectAccount(accounts.find((a) => String(a.id) === accountPicker.value) || null));
for (const b of document.querySelectorAll("#resolutions button")) b.addEventListener("click", () => selectResolution(b.dataset.resolution));
document.getElementById("ticket-close").addEventListener("click", () => ticket.close());

// Keyboard: B buy, S sell, Esc closes the ticket, / searches; arrows in the watchlist.
document.addEventListener("keydown", (event) => {
  const target = event.target;
  const typing = target instanceof HTMLElement && (target.matches("input, select, textarea") || target.isContentEditable);
  if (event.key === "Escape") {
    if (document.querySelector("dialog[open]")) return;
    ticket.close();
    if (typing) target.blur();
    return;
  }
  if (typing || event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.key === "/") {
    event.preventDefault();
    watchlist.search.focus();
  } else if (event.key === "b" || event.key === "B") {
    event.preventDefault();
    ticket.open("buy");
  } else if (event.key === "s" || event.key === "S") {
    event.preventDefault();
    ticket.open("sell");
  }
});

const clock = document.getElementById("clock");
const tick = () => (clock.textContent = `${fmt.time(new Date().toISOString())} ${fmt.timezone()}`);
tick();
setInterval(tick, 1000);

watchlist.render();
if (state.symbol && workspace.symbols().includes(state.symbol)) watchlist.select(state.symbol, { focus: false });
selectResolution(state.resolution);
selectAccount(state.account);
document.body.dataset.ready = "1";
