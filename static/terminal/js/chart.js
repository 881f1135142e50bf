// Candles and volume for one symbol and resolution: history from the UDF
// endpoint, the forming bar from bars:<symbol>:<resolution>, the account's
// fills as markers, older history fetched when the trader scrolls back.
import { CandlestickSeries, ColorType, HistogramSeries, createChart, createSeriesMarkers } from "/static/vendor/lightweight-charts/lightweight-charts.standalone.production.mjs";
import { api } from "./api.js";
import * as fmt from "./format.js";

const PAGE = 300;
const UP = "#2ebd85";
const DOWN = "#f6465d";

export class Chart {
  constructor({ container, stream, instruments }) {
    this.container = container;
    this.stream = stream;
    this.instruments = instruments;
    this.bars = [];
    this.symbol = null;
    this.resolution = "1";
    this.accountId = null;
    this.generation = 0;
    this.loadingOlder = false;
    this.noOlder = false;
    this.liveUpdates = 0;
    this.chart = createChart(container, {
      autoSize: true,
      layout: { background: { type: ColorType.Solid, color: "#0a0d12" }, textColor: "#8d98a6", fontSize: 11, attributionLogo: false },
      grid: { vertLines: { color: "#161c25" }, horzLines: { color: "#161c25" } },
      rightPriceScale: { borderColor: "#242c38" },
      timeScale: { borderColor: "#242c38", timeVisible: true, secondsVisible: false, rightOffset: 4 },
      crosshair: { mode: 0 },
      localization: { timeFormatter: (t) => fmt.time(new Date(t * 1000).toISOString(), { seconds: false, date: true }) },
    });
    this.candles = this.chart.addSeries(CandlestickSeries, { upColor: UP, downColor: DOWN, borderUpColor: UP, borderDownColor: DOWN, wickUpColor: UP, wickDownColor: DOWN });
    this.volume = this.chart.addSeries(HistogramSeries, { priceScaleId: "vol", priceFormat: { type: "volume" }, lastValueVisible: false, priceLineVisible: false });
    this.chart.priceScale("vol").applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
    this.candles.priceScale().applyOptions({ scaleMargins: { top: 0.08, bottom: 0.24 } });
    this.markers = createSeriesMarkers(this.candles, []);
    this.chart.timeScale().subscribeVisibleLogicalRangeChange((range) => {
      if (range && range.from < 15) this.loadOlder();
    });
  }

  async show(symbol, resolution, accountId) {
    if (symbol === this.symbol && resolution === this.resolution && accountId === this.accountId) return;
    const generation = ++this.generation;
    if (this.unsub) this.unsub();
    this.symbol = symbol;
    this.resolution = resolution;
    this.accountId = accountId;
    this.bars = [];
    this.noOlder = false;
    this.container.dataset.candles = "0";
    this.container.dataset.symbol = symbol || "";
    this.container.dataset.resolution = resolution;
    this.candles.setData([]);
    this.volume.setData([]);
    this.markers.setMarkers([]);
    if (!symbol) return;
    const [inst, history] = await Promise.all([this.instruments(symbol), this.history(Math.floor(Date.now() / 1000) + 60)]);
    if (generation !== this.generation) return;
    const tick = inst ? Number(inst.tick_size) : 0.01;
    const precision = fmt.decimalsOf(inst ? inst.tick_size : "0.01");
    this.candles.applyOptions({ priceFormat: { type: "price", precision, minMove: tick || 0.01 } });
    this.bars = history;
    this.draw();
    this.chart.timeScale().scrollToRealTime();
    if (this.bars.length && !document.body.dataset.firstCandleMs) document.body.dataset.firstCandleMs = String(Math.round(performance.now()));
    this.unsub = this.stream.subscribe(`bars:${symbol}:${resolution}`, (kind, data) => {
      if (kind !== "error" && data && generation === this.generation) this.live(data);
    });
    this.refreshMarkers();
  }

  async history(to) {
    const query = new URLSearchParams({ symbol: this.symbol, resolution: this.resolution, to: String(to), countback: String(PAGE) });
    let body;
    try {
      body = await api("GET", `/datafeed/history?${query}`);
    } catch {
      return [];
    }
    if (!body || body.s !== "ok") return [];
    return body.t.map((t, i) => ({ time: t, open: body.o[i], high: body.h[i], low: body.l[i], close: body.c[i], volume: body.v ? body.v[i] : 0 }));
  }

  async loadOlder() {
    if (this.loadingOlder || this.noOlder || !this.bars.length) return;
    this.loadingOlder = true;
    const generation = this.generation;
    const older = await this.history(this.bars[0].time);
    this.loadingOlder = false;
    if (generation !== this.generation) return;
    const fresh = older.filter((b) => b.time < this.bars[0].time);
    if (!fresh.length) {
      this.noOlder = true;
      return;
    }
    this.bars = fresh.concat(this.bars);
    this.draw();
    this.container.dataset.olderLoads = String(Number(this.container.dataset.olderLoads || 0) + 1);
  }

  draw() {
    this.candles.setData(this.bars.map(({ volume, ...bar }) => bar));
    this.volume.setData(this.bars.map((b) => ({ time: b.time, value: b.volume, color: b.close >= b.open ? "rgba(46,189,133,.35)" : "rgba(246,70,93,.35)" })));
    this.container.dataset.candles = String(this.bars.length);
    this.drawMarkers();
  }

  live(data) {
    const bar = { time: data.ts, open: Number(data.open), high: Number(data.high), low: Number(data.low), close: Number(data.close), volume: Number(data.volume) };
    const last = this.bars[this.bars.length - 1];
    if (last && bar.time < last.time) return;
    if (last && bar.time === last.time) this.bars[this.bars.length - 1] = bar;
    else this.bars.push(bar);
    const { volume, ...candle } = bar;
    this.candles.update(candle);
    this.volume.update({ time: bar.time, value: volume, color: bar.close >= bar.open ? "rgba(46,189,133,.35)" : "rgba(246,70,93,.35)" });
    this.liveUpdates += 1;
    this.container.dataset.liveUpdates = String(this.liveUpdates);
    this.container.dataset.lastBarTime = String(bar.time);
    this.container.dataset.lastClose = String(bar.close);
    this.container.dataset.candles = String(this.bars.length);
  }

  // The account's fills on this symbol, each on the bar that holds it.
  async refreshMarkers() {
    if (!this.accountId || !this.symbol) return;
    const generation = this.generation;
    let page;
    try {
      page = await api("GET", `/oms/deals?account_id=${this.accountId}&symbol=${encodeURIComponent(this.symbol)}&limit=200`);
    } catch {
      return;
    }
    if (generation !== this.generation) return;
    this.deals = page.results || [];
    this.drawMarkers();
  }

  drawMarkers() {
    const deals = this.deals || [];
    if (!this.bars.length) return;
    const times = this.bars.map((b) => b.time);
    const markers = [];
    for (const deal of deals) {
      const t = Math.floor(Date.parse(deal.executed_at) / 1000);
      let lo = 0;
      let hi = times.length - 1;
      if (t < times[0]) continue;
      while (lo < hi) {
        const mid = (lo + hi + 1) >> 1;
        if (times[mid] <= t) lo = mid;
        else hi = mid - 1;
      }
      const buy = deal.side === "buy";
      markers.push({ time: times[lo], position: buy ? "belowBar" : "aboveBar", color: buy ? UP : DOWN, shape: buy ? "arrowUp" : "arrowDown", text: `${buy ? "B" : "S"} ${fmt.qty(deal.qty)} @ ${deal.price}` });
    }
    markers.sort((a, b) => a.time - b.time);
    this.markers.setMarkers(markers);
    this.container.dataset.markers = String(markers.length);
  }
}
