// Markets: open one, change its fees, halt and resume it (POST/PATCH /v1/admin/markets).
import { api } from "../../api";
import { h, replace, state } from "../../dom";
import type { Market } from "../../store";
import { field, input, pendingOr, problem, table } from "./shared";

export function marketsPanel(panel: HTMLElement): void {
  const list = h("div", {}, state("loading", "Loading markets…"));
  const message = h("div", { class: "message", role: "status", id: "market-message" });
  panel.append(h("section", { class: "card", "aria-labelledby": "admin-markets-title" }, h("h2", { id: "admin-markets-title" }, "Markets"), message, list));

  const say = (text: string, ok: boolean) => {
    message.className = `message ${ok ? "ok" : "error"}`;
    message.textContent = text;
  };

  // The market as listed once the engine has applied a change (it answers 202 when slow).
  const applied = async (m: Market, body: Record<string, string>): Promise<boolean> => {
    for (let i = 0; i < 40; i++) {
      await new Promise((ok) => window.setTimeout(ok, 500));
      const r = await api<{ markets: Market[] }>("GET", "/v1/markets");
      const now = r.markets.find((x) => x.market === m.market);
      if (now && Object.entries(body).every(([k, v]) => (now as unknown as Record<string, string>)[k] === v)) return true;
    }
    return false;
  };

  const change = async (m: Market, body: Record<string, string>, done: string) => {
    try {
      const now = pendingOr(await api<Market>("PATCH", `/v1/admin/markets/${encodeURIComponent(m.market)}`, body));
      if (now) say(done, true);
      else {
        say(`${m.market}: sent, waiting for the engine…`, true);
        say((await applied(m, body)) ? done : `${m.market}: sent; the engine has not applied it yet.`, true);
      }
    } catch (e) {
      say(`${m.market}: ${problem(e)}`, false);
    }
    await load();
  };

  const row = (m: Market) => {
    const maker = input(`maker-${m.market}`, { value: m.maker_fee, size: "8", "aria-label": `${m.market} maker fee` });
    const taker = input(`taker-${m.market}`, { value: m.taker_fee, size: "8", "aria-label": `${m.market} taker fee` });
    const halted = m.status === "halted";
    return {
      attrs: { "data-market": m.market, "data-status": m.status },
      cells: [
        m.market,
        h("span", { class: `status ${m.status}` }, halted ? "Halted" : "Open"),
        `${m.tick} / ${m.step}`,
        `${m.min_amount} / ${m.min_notional}`,
        maker,
        taker,
        h(
          "span",
          { class: "actions" },
          h("button", { type: "button", class: "small", onclick: () => void change(m, { maker_fee: maker.value.trim(), taker_fee: taker.value.trim() }, `${m.market}: fees changed.`) }, "Save fees"),
          halted
            ? h("button", { type: "button", class: "small", onclick: () => void change(m, { status: "open" }, `${m.market} resumed.`) }, `Resume ${m.market}`)
            : h(
                "button",
                {
                  type: "button",
                  class: "small danger",
                  onclick: () => {
                    if (window.confirm(`Halt ${m.market}? New orders are refused until it is resumed.`)) void change(m, { status: "halted" }, `${m.market} halted.`);
                  },
                },
                `Halt ${m.market}`,
              ),
        ),
      ],
    };
  };

  async function load(): Promise<void> {
    try {
      const r = await api<{ markets: Market[] }>("GET", "/v1/markets");
      replace(list, table("admin-markets", ["Market", "Status", "Tick / step", "Min amount / total", "Maker fee", "Taker fee", ""], r.markets.map(row), "No markets yet."));
    } catch (e) {
      replace(list, state("error", problem(e)));
    }
  }

  // Opening a market.
  const names = ["base", "quote", "tick", "step", "min_amount", "min_notional", "maker_fee", "taker_fee"] as const;
  const inputs = Object.fromEntries(names.map((n) => [n, input(`new-market-${n}`, { required: "true" })])) as Record<(typeof names)[number], HTMLInputElement>;
  const created = h("div", { class: "message", role: "status" });
  const form = h(
    "form",
    { class: "card", "aria-labelledby": "new-market-title", novalidate: true },
    h("h2", { id: "new-market-title" }, "Open a market"),
    h("div", { class: "grid-fields" }, names.map((n) => field(n.replace("_", " "), inputs[n]))),
    h("button", { type: "submit" }, "Open market"),
    created,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = Object.fromEntries(names.map((n) => [n, inputs[n].value.trim()]));
    try {
      const m = pendingOr(await api<Market>("POST", "/v1/admin/markets", body));
      created.className = "message ok";
      created.textContent = m ? `${m.market} is open.` : "Sent; the engine has not answered yet.";
      form.reset();
    } catch (e) {
      created.className = "message error";
      created.textContent = problem(e);
    }
    await load();
  });
  panel.append(form);
  void load();
}
