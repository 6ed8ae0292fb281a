// The user's open orders, kept live: read once, then the feed's order events.
import { api, ApiError, idempotencyKey } from "../api";
import { h, replace, state, time } from "../dom";
import { subscribe } from "../feed";
import { words } from "../words";

export interface Order {
  order_id: number;
  market: string;
  side: "buy" | "sell";
  status: string;
  type?: string;
  price?: string | null;
  amount?: string | null;
  quote_amount?: string | null;
  filled: string;
  filled_quote: string;
  fee: string;
  fee_asset?: string;
  time_in_force?: string;
  post_only?: boolean;
  reason?: string | null;
  ts?: number;
}

const OPEN = new Set(["open", "partially_filled"]);

/** A live table of open orders (one market, or all when ``market`` is empty), with cancel and
 * cancel all. ``onTrade`` hears the user's fills. */
export function openOrders(market: string, onTrade?: (trade: any) => void): { el: HTMLElement; stop: () => void } {
  const orders = new Map<number, Order>();
  const body = h("div", {}, state("loading", "Loading your orders…"));
  const message = h("p", { class: "message", role: "status" });
  const cancelAll = h("button", { type: "button", class: "small danger", id: "cancel-all" }, "Cancel all");
  cancelAll.addEventListener("click", async () => {
    cancelAll.disabled = true;
    try {
      const q = market ? `?market=${encodeURIComponent(market)}` : "";
      await api("DELETE", `/v1/orders${q}`, undefined, idempotencyKey());
      replace(message, "Cancelled your open orders.");
    } catch (e) {
      replace(message, e instanceof ApiError ? words(e.code, e.message) : String(e));
    } finally {
      cancelAll.disabled = false;
    }
  });
  const el = h("section", { class: "card", "aria-labelledby": "open-title" }, h("div", { class: "row" }, h("h2", { id: "open-title" }, "Open orders"), cancelAll), message, body);

  const cancel = async (o: Order) => {
    try {
      await api("DELETE", `/v1/orders/${o.order_id}`, undefined, idempotencyKey());
    } catch (e) {
      replace(message, e instanceof ApiError ? words(e.code, e.message) : String(e));
    }
  };

  const draw = () => {
    const list = [...orders.values()].filter((o) => OPEN.has(o.status)).sort((a, b) => b.order_id - a.order_id);
    cancelAll.hidden = list.length === 0;
    if (list.length === 0) {
      replace(body, state("empty", "No open orders."));
      return;
    }
    replace(
      body,
      h(
        "div",
        { class: "scroll" },
        h(
          "table",
          { class: "orders" },
          h("thead", {}, h("tr", {}, ...["Time", "Market", "Side", "Price", "Amount", "Filled", ""].map((t) => h("th", { scope: "col" }, t)))),
          h(
            "tbody",
            {},
            list.map((o) =>
              h(
                "tr",
                { "data-order": String(o.order_id) },
                h("td", {}, o.ts ? time(o.ts) : ""),
                h("td", {}, o.market),
                h("td", { class: o.side }, o.side),
                h("td", { class: "num" }, o.price ?? "market"),
                h("td", { class: "num" }, o.amount ?? `${o.quote_amount} total`),
                h("td", { class: "num" }, o.filled),
                h("td", {}, h("button", { type: "button", class: "small", "aria-label": `Cancel order ${o.order_id}`, onclick: () => void cancel(o) }, "Cancel")),
              ),
            ),
          ),
        ),
      ),
    );
  };

  const stop = subscribe("orders", (_kind, events: any[]) => {
    for (const e of events) {
      if (market && e.market && e.market !== market) continue;
      if (e.event === "order_accepted") orders.set(e.order_id, { ...e, status: "open", filled: "0", filled_quote: "0", fee: "0" });
      else if (e.event === "order_updated") {
        const o = orders.get(e.order_id);
        if (o) orders.set(e.order_id, { ...o, ...e });
      } else if (e.event === "trade" && onTrade) onTrade(e);
    }
    draw();
  });
  const q = new URLSearchParams({ status: "open", limit: "100" });
  if (market) q.set("market", market);
  api<{ orders: Order[] }>("GET", `/v1/orders?${q}`).then(
    (r) => {
      for (const o of r.orders) if (!orders.has(o.order_id)) orders.set(o.order_id, o);
      draw();
    },
    (e) => replace(body, state("error", e instanceof ApiError ? e.message : String(e))),
  );
  return { el, stop };
}
