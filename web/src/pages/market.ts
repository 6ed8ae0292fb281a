import {
  CandlestickSeries,
  ColorType,
  createChart,
  HistogramSeries,
  type IChartApi,
  type ISeriesApi,
  type UTCTimestamp,
} from "lightweight-charts";
import { api, ApiError, idempotencyKey, signedIn } from "../api";
import { Big, dec, decimals, floorTo, isDecimal, multipleOf, sign } from "../decimal";
import { h, replace, state, time } from "../dom";
import { Book, subscribe } from "../feed";
import { loadMarkets, watchBalances, type Balance, type Market, type Ticker } from "../store";
import { words } from "../words";
import { changePercent } from "./markets";
import { openOrders } from "./orders";

const INTERVALS = ["1m", "5m", "15m", "1h", "4h", "1d"] as const;
const BOOK_ROWS = 12;

interface Kline {
  open_time: number;
  open: string;
  high: string;
  low: string;
  close: string;
  volume: string;
}

interface Trade {
  trade_id: number;
  price: string;
  amount: string;
  taker_side: "buy" | "sell";
  ts: number;
}

export function marketPage(main: HTMLElement, name: string): () => void {
  const stops: (() => void)[] = [];
  main.append(state("loading", "Loading the market…"));
  let alive = true;
  loadMarkets().then(
    (markets) => {
      if (!alive) return;
      const market = markets.find((m) => m.market === name);
      main.replaceChildren();
      if (!market) {
        main.append(state("error", `There is no market ${name}.`), h("a", { href: "#/markets" }, "All markets"));
        return;
      }
      draw(main, market, stops);
    },
    (e) => replace(main, state("error", e instanceof ApiError ? e.message : String(e))),
  );
  return () => {
    alive = false;
    stops.forEach((s) => s());
  };
}

function draw(main: HTMLElement, m: Market, stops: (() => void)[]): void {
  const form = orderForm(m, stops);
  const ticker = tickerBar(m, stops);
  const chart = chartCard(m, stops);
  const book = bookCard(m, (level, price, amount) => form.fill(level === "ask" ? "buy" : "sell", price, amount), stops);
  const trades = tradesCard(m, stops);
  const mine = signedIn() ? openOrders(m.market, () => undefined) : null;
  if (mine) stops.push(mine.stop);
  main.append(
    h(
      "div",
      { class: "market" },
      ticker,
      h("div", { class: "area-chart" }, chart),
      h("div", { class: "area-book" }, book, trades),
      h("div", { class: "area-form" }, form.el),
      h("div", { class: "area-mine" }, mine ? mine.el : h("section", { class: "card" }, h("p", {}, h("a", { href: "#/login" }, "Log in"), " or ", h("a", { href: "#/signup" }, "sign up"), " to trade."))),
    ),
  );
}

// ---------------------------------------------------------------------------------- ticker

function tickerBar(m: Market, stops: (() => void)[]): HTMLElement {
  const el = h("section", { class: "ticker card", "aria-label": "24 hour ticker" });
  const show = (t: Ticker | null) =>
    replace(
      el,
      h("h1", {}, `${m.base}/${m.quote}`),
      stat("Last", t?.last ?? "–", `ticker-last ${sign(t?.change)}`),
      stat("24h change", t ? `${t.change ?? "–"} (${changePercent(t)})` : "–", sign(t?.change)),
      stat("24h high", t?.high ?? "–"),
      stat("24h low", t?.low ?? "–"),
      stat(`24h volume (${m.base})`, t?.volume ?? "–"),
      m.status !== "open" ? h("strong", { class: "halted" }, `Market ${m.status}`) : null,
    );
  show(null);
  stops.push(subscribe(`ticker:${m.market}`, (_k, t: Ticker) => show(t)));
  return el;
}

function stat(label: string, value: string, cls = ""): HTMLElement {
  return h("div", { class: "stat" }, h("span", { class: "label" }, label), h("span", { class: `value num ${cls}` }, value));
}

// ---------------------------------------------------------------------------------- chart

function cssVar(name: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

function chartCard(m: Market, stops: (() => void)[]): HTMLElement {
  const box = h("div", { class: "chart", id: "chart", role: "img", "aria-label": `Price chart of ${m.market}` });
  const status = h("p", { class: "chart-state", role: "status" });
  const buttons = INTERVALS.map((i) => h("button", { type: "button", class: "small", "data-interval": i, "aria-pressed": i === "1m" ? "true" : "false" }, i));
  const el = h("section", { class: "card", "aria-label": "Chart" }, h("div", { class: "row intervals", role: "group", "aria-label": "Candle interval" }, buttons), box, status);
  let chart: IChartApi | null = null;
  let candles: ISeriesApi<"Candlestick"> | null = null;
  let volume: ISeriesApi<"Histogram"> | null = null;
  let stopKlines: (() => void) | null = null;
  // Left before an answer came (a reload that ends on the login page): a removed chart throws
  // "Object is disposed" when drawn on.
  let stopped = false;
  const up = () => cssVar("--up") || "#0a8f5a";
  const down = () => cssVar("--down") || "#d0353f";

  const bar = (k: Kline) => ({
    time: (k.open_time / 1000) as UTCTimestamp,
    open: Number(k.open),
    high: Number(k.high),
    low: Number(k.low),
    close: Number(k.close),
  });
  const vol = (k: Kline) => ({
    time: (k.open_time / 1000) as UTCTimestamp,
    value: Number(k.volume),
    color: dec(k.close).gte(k.open) ? up() : down(),
  });

  const load = (interval: string) => {
    stopKlines?.();
    buttons.forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.interval === interval)));
    replace(status, "Loading candles…");
    // The feed's snapshot is the newest 100 candles; the rest come over HTTP first.
    api<{ klines: Kline[] }>("GET", `/v1/markets/${m.market}/klines?interval=${interval}&limit=300`).then(
      (r) => {
        if (stopped) return;
        candles?.setData(r.klines.map(bar));
        volume?.setData(r.klines.map(vol));
        replace(status, r.klines.length ? "" : "No trades yet: the chart starts with the first trade.");
        if (r.klines.length > 60) chart?.timeScale().fitContent();
        stopKlines = subscribe(`kline:${m.market}:${interval}`, (_kind, data: Kline[]) => {
          for (const k of data) {
            try {
              candles?.update(bar(k));
              volume?.update(vol(k));
            } catch {
              // older than the last bar: already drawn from the HTTP read
            }
          }
          if (data.length) replace(status, "");
        });
      },
      (e) => replace(status, e instanceof ApiError ? e.message : String(e)),
    );
  };
  buttons.forEach((b) => b.addEventListener("click", () => load(b.dataset.interval ?? "1m")));

  // Drawn once the element is in the page (it needs its size).
  requestAnimationFrame(() => {
    if (stopped) return;
    chart = createChart(box, {
      autoSize: true,
      layout: { background: { type: ColorType.Solid, color: "transparent" }, textColor: cssVar("--fg") || "#222", attributionLogo: false },
      grid: { vertLines: { color: cssVar("--grid") || "#eee" }, horzLines: { color: cssVar("--grid") || "#eee" } },
      timeScale: { timeVisible: true, secondsVisible: false, rightOffset: 6, barSpacing: 10 },
      rightPriceScale: { scaleMargins: { top: 0.1, bottom: 0.25 } },
    });
    candles = chart.addSeries(CandlestickSeries, {
      upColor: up(), downColor: down(), borderVisible: false, wickUpColor: up(), wickDownColor: down(),
      priceFormat: { type: "price", precision: decimals(m.tick), minMove: Number(m.tick) },
    });
    volume = chart.addSeries(HistogramSeries, { priceScaleId: "", priceFormat: { type: "volume" }, lastValueVisible: false, priceLineVisible: false });
    volume.priceScale().applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
    load("1m");
  });
  stops.push(() => {
    stopped = true;
    stopKlines?.();
    chart?.remove();
    chart = candles = volume = null;
  });
  return el;
}

// ---------------------------------------------------------------------------------- book

function bookCard(m: Market, pick: (level: "ask" | "bid", price: string, amount: string) => void, stops: (() => void)[]): HTMLElement {
  const asks = h("tbody", { class: "asks" });
  const bids = h("tbody", { class: "bids" });
  const spread = h("tbody", { class: "spread" });
  const status = h("p", { class: "book-state", role: "status" }, "Loading the book…");
  const table = h(
    "table",
    { class: "book", id: "book" },
    h("caption", { class: "sr" }, "Order book: asks above, bids below; choose a level to fill the order form"),
    h("thead", {}, h("tr", {}, h("th", { scope: "col", class: "num" }, `Price (${m.quote})`), h("th", { scope: "col", class: "num" }, `Amount (${m.base})`), h("th", { scope: "col", class: "num" }, "Total"))),
    asks,
    spread,
    bids,
  );
  const el = h("section", { class: "card", "aria-labelledby": "book-title" }, h("h2", { id: "book-title" }, "Order book"), status, h("div", { class: "scroll" }, table));

  const sorted = (side: Map<string, string>, desc: boolean) =>
    [...side.entries()].sort((a, b) => (desc ? dec(b[0]).cmp(a[0]) : dec(a[0]).cmp(b[0]))).slice(0, BOOK_ROWS);
  const row = (cls: string, [price, amount]: [string, string], cumulative: Big) =>
    h(
      "tr",
      { class: `level ${cls}`, tabindex: "0", "data-price": price, role: "button", "aria-label": `${cls === "ask" ? "Sell" : "Buy"} ${amount} at ${price}: fill the form` },
      h("td", { class: `num ${cls === "ask" ? "down" : "up"}` }, price),
      h("td", { class: "num" }, amount),
      h("td", { class: "num muted" }, cumulative.toFixed()),
    );
  const book = new Book(m.market, () => {
    const a = sorted(book.asks, false);
    const b = sorted(book.bids, true);
    let cum = new Big(0);
    const askRows = a.map((l) => row("ask", l, (cum = cum.plus(l[1]))));
    cum = new Big(0);
    const bidRows = b.map((l) => row("bid", l, (cum = cum.plus(l[1]))));
    replace(asks, askRows.reverse());
    replace(bids, bidRows);
    const best = a[0] && b[0] ? `Spread ${dec(a[0][0]).minus(b[0][0]).toFixed(decimals(m.tick))}` : "";
    replace(spread, h("tr", {}, h("td", { colspan: "3", class: "muted" }, best)));
    replace(status, a.length || b.length ? "" : "The book is empty.");
    el.dataset.seq = String(book.seq);
    el.dataset.resyncs = String(book.resyncs);
  });
  const choose = (target: EventTarget | null) => {
    const tr = (target as HTMLElement | null)?.closest("tr.level") as HTMLElement | null;
    if (tr?.dataset.price) pick(tr.classList.contains("ask") ? "ask" : "bid", tr.dataset.price, tr.children[1]?.textContent ?? "");
  };
  table.addEventListener("click", (e) => choose(e.target));
  table.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      choose(e.target);
    }
  });
  stops.push(book.listen());
  return el;
}

// ---------------------------------------------------------------------------------- trades

function tradesCard(m: Market, stops: (() => void)[]): HTMLElement {
  const body = h("tbody");
  const status = h("p", { role: "status" }, "Loading trades…");
  const el = h(
    "section",
    { class: "card", "aria-labelledby": "trades-title" },
    h("h2", { id: "trades-title" }, "Recent trades"),
    status,
    h("div", { class: "scroll" }, h("table", { class: "trades", id: "trades" }, h("thead", {}, h("tr", {}, h("th", { scope: "col", class: "num" }, "Price"), h("th", { scope: "col", class: "num" }, "Amount"), h("th", { scope: "col" }, "Time"))), body)),
  );
  let trades: Trade[] = [];
  const drawAll = () => {
    replace(
      body,
      trades.slice(0, 40).map((t) => h("tr", { "data-trade": String(t.trade_id) }, h("td", { class: `num ${t.taker_side === "buy" ? "up" : "down"}` }, t.price), h("td", { class: "num" }, t.amount), h("td", {}, time(t.ts)))),
    );
    replace(status, trades.length ? "" : "No trades yet.");
  };
  stops.push(
    subscribe(`trades:${m.market}`, (kind, data: Trade[]) => {
      // The snapshot and updates are oldest first; the list shows the newest first.
      const fresh = [...data].reverse();
      trades = kind === "snapshot" ? fresh : [...fresh, ...trades].slice(0, 100);
      drawAll();
    }),
  );
  return el;
}

// ---------------------------------------------------------------------------------- form

interface OrderForm {
  el: HTMLElement;
  /** A book level chosen: take it (buy an ask, sell to a bid) at its price and amount. */
  fill: (side: "buy" | "sell", price: string, amount: string) => void;
}

function orderForm(m: Market, stops: (() => void)[]): OrderForm {
  let side: "buy" | "sell" = "buy";
  let balances: Record<string, Balance> = {};
  const sideButtons = (["buy", "sell"] as const).map((s) =>
    h("button", { type: "button", class: `side ${s}`, "data-side": s, "aria-pressed": s === side ? "true" : "false" }, s === "buy" ? `Buy ${m.base}` : `Sell ${m.base}`),
  );
  const type = h("select", { name: "type", id: "order-type" }, h("option", { value: "limit" }, "Limit"), h("option", { value: "market" }, "Market"));
  const price = h("input", { name: "price", id: "order-price", inputmode: "decimal", autocomplete: "off", placeholder: m.tick });
  const amount = h("input", { name: "amount", id: "order-amount", inputmode: "decimal", autocomplete: "off", placeholder: m.step });
  const total = h("input", { name: "total", id: "order-total", inputmode: "decimal", autocomplete: "off" });
  const by = h("select", { name: "by", id: "order-by", "aria-label": "Give the amount or the total" }, h("option", { value: "amount" }, `Amount (${m.base})`), h("option", { value: "total" }, `Total (${m.quote})`));
  const tif = h("select", { name: "tif", id: "order-tif" }, h("option", { value: "GTC" }, "Good till cancelled"), h("option", { value: "IOC" }, "Immediate or cancel"), h("option", { value: "FOK" }, "Fill or kill"));
  const postOnly = h("input", { type: "checkbox", name: "post_only", id: "order-post-only" });
  const available = h("p", { class: "muted", id: "order-available" });
  const summary = h("p", { class: "muted", id: "order-summary" });
  const message = h("p", { class: "message", id: "order-message", role: "status", "aria-live": "polite" });
  const submit = h("button", { type: "submit", id: "order-submit" });
  const priceField = h("label", { class: "field" }, h("span", {}, `Price (${m.quote})`), price);
  const amountField = h("label", { class: "field" }, h("span", {}, `Amount (${m.base})`), amount);
  const totalField = h("label", { class: "field" }, h("span", {}, `Total (${m.quote})`), total);
  const limitOnly = h("div", { class: "row" }, h("label", { class: "field" }, h("span", {}, "Time in force"), tif), h("label", { class: "check" }, postOnly, " Post only"));
  const rules = h("p", { class: "muted small" }, `Tick ${m.tick} · step ${m.step} · min ${m.min_amount} ${m.base} · min total ${m.min_notional} ${m.quote}`);
  const form = h(
    "form",
    { class: "card order-form", id: "order-form", "aria-labelledby": "form-title", novalidate: true },
    h("h2", { id: "form-title" }, "Place an order"),
    h("div", { class: "sides", role: "group", "aria-label": "Side" }, sideButtons),
    h("div", { class: "row" }, h("label", { class: "field" }, h("span", {}, "Type"), type), h("label", { class: "field" }, h("span", {}, "Give"), by)),
    priceField,
    amountField,
    totalField,
    limitOnly,
    rules,
    available,
    summary,
    submit,
    message,
  );

  const base = () => balances[m.base]?.available ?? "0";
  const quote = () => balances[m.quote]?.available ?? "0";
  const isMarket = () => type.value === "market";
  const byTotal = () => by.value === "total";

  const layout = () => {
    sideButtons.forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.side === side)));
    form.dataset.side = side;
    // A market sell is by amount only; a market buy may give the total to spend.
    if (isMarket() && side === "sell") by.value = "amount";
    (by.querySelector('option[value="total"]') as HTMLOptionElement).disabled = isMarket() && side === "sell";
    priceField.hidden = isMarket();
    limitOnly.hidden = isMarket();
    amountField.hidden = byTotal();
    totalField.hidden = !byTotal();
    submit.textContent = `${side === "buy" ? "Buy" : "Sell"} ${m.base}`;
    submit.className = side;
    if (!signedIn()) {
      submit.disabled = true;
      replace(available, h("a", { href: "#/login" }, "Log in"), " to trade.");
    } else {
      submit.disabled = false;
      replace(available, side === "buy" ? `Available: ${quote()} ${m.quote}` : `Available: ${base()} ${m.base}`);
    }
    replace(summary, estimate());
  };

  const estimate = (): string => {
    if (isMarket() || !isDecimal(price.value)) return "";
    if (!byTotal() && isDecimal(amount.value)) return `Total ≈ ${dec(price.value).times(amount.value).toFixed()} ${m.quote}`;
    if (byTotal() && isDecimal(total.value) && dec(price.value).gt(0)) return `Amount ≈ ${floorTo(dec(total.value).div(price.value), m.step)} ${m.base}`;
    return "";
  };

  /** The order to send, or the reason not to send it. */
  const check = (): { body: Record<string, unknown> } | { error: string } => {
    const body: Record<string, unknown> = { market: m.market, side, type: type.value };
    let p: Big | null = null;
    if (!isMarket()) {
      if (!isDecimal(price.value) || dec(price.value).eq(0)) return { error: "Enter a price." };
      p = dec(price.value);
      if (!multipleOf(p, m.tick)) return { error: `The price must be a multiple of ${m.tick}.` };
      body.price = price.value;
      body.time_in_force = tif.value;
      if (postOnly.checked) {
        if (tif.value !== "GTC") return { error: "Post-only orders rest in the book: choose good till cancelled." };
        body.post_only = true;
      }
    }
    let a: Big | null = null;
    if (byTotal()) {
      if (!isDecimal(total.value) || dec(total.value).eq(0)) return { error: "Enter the total." };
      if (isMarket()) {
        body.quote_amount = total.value;
        if (dec(total.value).gt(quote())) return { error: `Not enough ${m.quote}: ${quote()} available.` };
        if (dec(total.value).lt(m.min_notional)) return { error: `The total must be at least ${m.min_notional} ${m.quote}.` };
        return { body };
      }
      a = dec(floorTo(dec(total.value).div(p as Big), m.step));
    } else {
      if (!isDecimal(amount.value) || dec(amount.value).eq(0)) return { error: "Enter an amount." };
      a = dec(amount.value);
      if (!multipleOf(a, m.step)) return { error: `The amount must be a multiple of ${m.step}.` };
    }
    if (a.lt(m.min_amount)) return { error: `The amount must be at least ${m.min_amount} ${m.base}.` };
    body.amount = a.toFixed();
    if (p && p.times(a).lt(m.min_notional)) return { error: `The total must be at least ${m.min_notional} ${m.quote}.` };
    if (side === "sell" && a.gt(base())) return { error: `Not enough ${m.base}: ${base()} available.` };
    if (side === "buy" && p && p.times(a).gt(quote())) return { error: `Not enough ${m.quote}: ${quote()} available.` };
    return { body };
  };

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const checked = check();
    if ("error" in checked) {
      message.className = "message error";
      replace(message, checked.error);
      return;
    }
    submit.disabled = true;
    message.className = "message";
    replace(message, "Sending…");
    try {
      const answer = await api<any>("POST", "/v1/orders", checked.body, idempotencyKey());
      message.className = "message ok";
      if (answer.order_id !== undefined) {
        const cancelled = answer.status === "cancelled" && answer.reason;
        replace(message, cancelled ? `Order ${answer.order_id}: ${words(answer.reason)}` : `Order ${answer.order_id}: ${answer.status.replace("_", " ")}.`);
      } else {
        replace(message, "Order sent; the matcher is busy, it will show in your open orders.");
      }
    } catch (e) {
      message.className = "message error";
      replace(message, e instanceof ApiError ? words(e.code, e.message) : String(e));
    } finally {
      submit.disabled = !signedIn();
    }
  });
  sideButtons.forEach((b) =>
    b.addEventListener("click", () => {
      side = b.dataset.side as "buy" | "sell";
      layout();
    }),
  );
  for (const input of [type, by, price, amount, total, tif, postOnly]) input.addEventListener("input", layout);
  if (signedIn()) {
    stops.push(
      watchBalances(
        (b) => {
          balances = b;
          layout();
        },
        () => undefined,
      ),
    );
  }
  layout();
  return {
    el: form,
    fill: (s: "buy" | "sell", p: string, a: string) => {
      side = s;
      type.value = "limit";
      price.value = p;
      if (!byTotal()) amount.value = a;
      layout();
      price.focus();
    },
  };
}
