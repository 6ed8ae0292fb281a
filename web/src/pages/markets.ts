import { api, ApiError } from "../api";
import { Big, sign } from "../decimal";
import { h, replace, state } from "../dom";
import { subscribe } from "../feed";
import { loadMarkets, type Market, type Ticker } from "../store";

export function changePercent(t: Ticker | undefined): string {
  if (!t || t.change === null || !t.open || new Big(t.open).eq(0)) return "–";
  const p = new Big(t.change).div(t.open).times(100);
  return `${p.gt(0) ? "+" : ""}${p.toFixed(2)}%`;
}

export function marketsPage(main: HTMLElement): () => void {
  const body = h("div", {}, state("loading", "Loading markets…"));
  main.append(h("section", { class: "card" }, h("h1", {}, "Markets"), body));
  const stops: (() => void)[] = [];
  const tickers = new Map<string, Ticker>();
  const rows = new Map<string, HTMLTableRowElement>();

  const draw = (m: Market) => {
    const t = tickers.get(m.market);
    const row = rows.get(m.market);
    if (!row) return;
    replace(
      row,
      h("th", { scope: "row" }, h("a", { href: `#/market/${m.market}` }, `${m.base}/${m.quote}`)),
      h("td", { class: "num" }, t?.last ?? "–"),
      h("td", { class: `num ${sign(t?.change)}` }, changePercent(t)),
      h("td", { class: "num" }, t ? `${t.volume} ${m.base}` : "–"),
      h("td", {}, m.status === "open" ? "" : m.status),
    );
  };

  (async () => {
    try {
      const [markets, list] = await Promise.all([
        loadMarkets(),
        api<{ tickers: Ticker[] }>("GET", "/v1/tickers"),
      ]);
      for (const t of list.tickers) tickers.set(t.market, t);
      if (markets.length === 0) {
        replace(body, state("empty", "No markets are open yet."));
        return;
      }
      const tbody = h("tbody");
      for (const m of markets) {
        const row = h("tr", { "data-market": m.market });
        rows.set(m.market, row);
        tbody.append(row);
        draw(m);
        stops.push(
          subscribe(`ticker:${m.market}`, (_kind, data: Ticker) => {
            tickers.set(m.market, data);
            draw(m);
          }),
        );
      }
      replace(
        body,
        h(
          "div",
          { class: "scroll" },
          h(
            "table",
            { class: "markets" },
            h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Market"), h("th", { scope: "col", class: "num" }, "Last"), h("th", { scope: "col", class: "num" }, "24h change"), h("th", { scope: "col", class: "num" }, "24h volume"), h("th", { scope: "col" }, ""))),
            tbody,
          ),
        ),
      );
    } catch (e) {
      replace(body, state("error", e instanceof ApiError ? e.message : String(e)));
    }
  })();
  return () => stops.forEach((s) => s());
}
