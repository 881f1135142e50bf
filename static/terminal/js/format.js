// Prices by the instrument's tick size, money by its currency, times in the user's timezone.

const MINOR_UNITS = { JPY: 0, KRW: 0, VND: 0, CLP: 0, ISK: 0, BHD: 3, KWD: 3, OMR: 3, JOD: 3, TND: 3 };
const FIAT = new Set(["USD", "EUR", "GBP", "JPY", "KRW", "INR", "CHF", "CAD", "AUD", "HKD", "SGD", "CNY", "NZD", "SEK", "NOK", "DKK"]);
let zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
const cache = new Map();

export function setTimezone(tz) {
  if (!tz) return;
  try {
    new Intl.DateTimeFormat(undefined, { timeZone: tz });
    zone = tz;
    cache.clear();
  } catch {
    /* an unknown zone keeps the browser's */
  }
}
export function timezone() {
  return zone;
}

export function decimalsOf(tick) {
  if (tick === null || tick === undefined) return 2;
  const text = String(tick);
  const dot = text.indexOf(".");
  if (dot < 0) return 0;
  return text.slice(dot + 1).replace(/0+$/, "").length;
}

function numberFormat(min, max) {
  const key = `n${min}:${max}`;
  if (!cache.has(key)) cache.set(key, new Intl.NumberFormat("en-US", { minimumFractionDigits: min, maximumFractionDigits: max }));
  return cache.get(key);
}

export function price(value, tick) {
  if (value === null || value === undefined || value === "") return "—";
  const digits = decimalsOf(tick);
  return numberFormat(digits, digits).format(Number(value));
}

export function qty(value) {
  if (value === null || value === undefined || value === "") return "—";
  return numberFormat(0, 10).format(Number(value));
}

export function minorUnits(currency) {
  if (currency in MINOR_UNITS) return MINOR_UNITS[currency];
  return FIAT.has(currency) ? 2 : 8;
}

export function money(value, currency, { sign = false } = {}) {
  if (value === null || value === undefined || value === "") return "—";
  const n = Number(value);
  const digits = minorUnits(currency);
  // Coins keep up to 8 decimals but drop trailing zeros beyond 2.
  const text = numberFormat(Math.min(digits, 2), digits).format(Math.abs(n));
  const prefix = n < 0 ? "−" : sign && n > 0 ? "+" : "";
  return `${prefix}${text} ${currency}`;
}

// Up/down by sign and arrow as well as colour.
export function signed(value, digits = 2, suffix = "") {
  if (value === null || value === undefined || value === "") return { text: "—", cls: "" };
  const n = Number(value);
  const arrow = n > 0 ? "▲" : n < 0 ? "▼" : "";
  const sign = n > 0 ? "+" : n < 0 ? "−" : "";
  return { text: `${arrow}${sign}${numberFormat(digits, digits).format(Math.abs(n))}${suffix}`, cls: n > 0 ? "up" : n < 0 ? "down" : "" };
}

export function time(iso, { seconds = true, date = false } = {}) {
  if (!iso) return "—";
  const key = `t${seconds}${date}`;
  if (!cache.has(key)) {
    const options = { timeZone: zone, hour: "2-digit", minute: "2-digit", hour12: false };
    if (seconds) options.second = "2-digit";
    if (date) Object.assign(options, { month: "2-digit", day: "2-digit" });
    cache.set(key, new Intl.DateTimeFormat("en-GB", options));
  }
  return cache.get(key).format(new Date(iso));
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}
