import { api, ApiError } from "../api";
import { dateTime, h, replace, state } from "../dom";
import { words } from "../words";
import { openOrders, type Order } from "./orders";

interface OwnTrade {
  trade_id: number;
  market: string;
  side: string;
  role: string;
  price: string;
  amount: string;
  quote: string;
  fee: string;
  fee_asset: string;
  ts: number;
}

function table(id: string, heads: string[], rows: HTMLTableRowElement[]): HTMLElement {
  return h("div", { class: "scroll" }, h("table", { id }, h("thead", {}, h("tr", {}, heads.map((t) => h("th", { scope: "col" }, t)))), h("tbody", {}, rows)));
}

export function historyPage(main: HTMLElement): () => void {
  const open = openOrders("", () => void loadTrades());
  const past = h("div", {}, state("loading", "Loading order history…"));
  const fills = h("div", {}, state("loading", "Loading your trades…"));
  main.append(
    open.el,
    h("section", { class: "card", "aria-labelledby": "hist-title" }, h("h2", { id: "hist-title" }, "Order history"), past),
    h("section", { class: "card", "aria-labelledby": "fills-title" }, h("h2", { id: "fills-title" }, "Your trades"), fills),
  );
  const loadOrders = () =>
    api<{ orders: Order[] }>("GET", "/v1/orders?status=closed&limit=50").then(
      (r) =>
        replace(
          past,
          r.orders.length
            ? table(
                "order-history",
                ["Time", "Market", "Side", "Type", "Price", "Amount", "Filled", "Status"],
                r.orders.map((o) =>
                  h(
                    "tr",
                    {},
                    h("td", {}, o.ts ? dateTime(o.ts) : ""),
                    h("td", {}, o.market),
                    h("td", { class: o.side }, o.side),
                    h("td", {}, o.type ?? ""),
                    h("td", { class: "num" }, o.price ?? "market"),
                    h("td", { class: "num" }, o.amount ?? `${o.quote_amount} total`),
                    h("td", { class: "num" }, o.filled),
                    h("td", { title: o.reason ? words(o.reason) : "" }, o.status.replace("_", " ")),
                  ),
                ),
              )
            : state("empty", "No closed orders yet."),
        ),
      (e) => replace(past, state("error", e instanceof ApiError ? e.message : String(e))),
    );
  const loadTrades = () =>
    api<{ trades: OwnTrade[] }>("GET", "/v1/trades?limit=50").then(
      (r) => {
        replace(
          fills,
          r.trades.length
            ? table(
                "own-trades",
                ["Time", "Market", "Side", "Role", "Price", "Amount", "Total", "Fee"],
                r.trades.map((t) =>
                  h(
                    "tr",
                    { "data-trade": String(t.trade_id) },
                    h("td", {}, dateTime(t.ts)),
                    h("td", {}, t.market),
                    h("td", { class: t.side }, t.side),
                    h("td", {}, t.role),
                    h("td", { class: "num" }, t.price),
                    h("td", { class: "num" }, t.amount),
                    h("td", { class: "num" }, t.quote),
                    h("td", { class: "num" }, `${t.fee} ${t.fee_asset}`),
                  ),
                ),
              )
            : state("empty", "No trades yet."),
        );
        void loadOrders();
      },
      (e) => replace(fills, state("error", e instanceof ApiError ? e.message : String(e))),
    );
  void loadTrades();
  return open.stop;
}
