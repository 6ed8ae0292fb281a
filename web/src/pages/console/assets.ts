// Assets and their chain settings: list one (POST /v1/admin/assets), change its deposit and
// withdrawal rules (PATCH /v1/admin/assets/{asset}/chain).
import { api } from "../../api";
import { h, replace, state } from "../../dom";
import type { Asset, Chain } from "../../store";
import { field, input, pendingOr, problem, table } from "./shared";

const RULES = ["confirmations", "min_deposit", "withdrawal_fee", "min_withdrawal", "withdrawal_daily_limit", "withdrawal_review_threshold", "sweep_threshold"] as const;
type Rule = (typeof RULES)[number];

export function assetsPanel(panel: HTMLElement): void {
  const list = h("div", {}, state("loading", "Loading assets…"));
  const message = h("div", { class: "message", role: "status", id: "asset-message" });
  panel.append(h("section", { class: "card", "aria-labelledby": "admin-assets-title" }, h("h2", { id: "admin-assets-title" }, "Assets and chain settings"), message, list));
  const say = (text: string, ok: boolean) => {
    message.className = `message ${ok ? "ok" : "error"}`;
    message.textContent = text;
  };

  const row = (a: Asset) => {
    const chain = (a.chain ?? {}) as Chain & Record<string, unknown>;
    const boxes = Object.fromEntries(
      RULES.map((r) => [r, input(`${a.asset}-${r}`, { value: chain[r] === undefined ? "" : String(chain[r]), size: "8", "aria-label": `${a.asset} ${r.replace(/_/g, " ")}`, placeholder: "default" })]),
    ) as Record<Rule, HTMLInputElement>;
    const save = async () => {
      // An emptied box removes the rule (the wallet's default applies again).
      const body: Record<string, string | number | null> = {};
      for (const r of RULES) {
        const v = boxes[r].value.trim();
        const was = chain[r] === undefined ? "" : String(chain[r]);
        if (v === was) continue;
        body[r] = v === "" ? null : r === "confirmations" ? Number(v) : v;
      }
      if (!Object.keys(body).length) return say(`${a.asset}: nothing changed.`, true);
      try {
        await api("PATCH", `/v1/admin/assets/${encodeURIComponent(a.asset)}/chain`, body);
        say(`${a.asset}: rules saved.`, true);
      } catch (e) {
        say(`${a.asset}: ${problem(e)}`, false);
      }
      await load();
    };
    return {
      attrs: { "data-asset": a.asset },
      cells: [
        a.asset,
        { num: String(a.precision) },
        a.chain ? a.chain.kind : "—",
        ...RULES.map((r) => (a.chain ? boxes[r] : "")),
        a.chain ? h("button", { type: "button", class: "small", onclick: () => void save() }, `Save ${a.asset}`) : "",
      ],
    };
  };

  async function load(): Promise<void> {
    try {
      const r = await api<{ assets: Asset[] }>("GET", "/v1/assets");
      replace(
        list,
        table("admin-assets", ["Asset", "Precision", "Chain", "Confirmations", "Min deposit", "Withdrawal fee", "Min withdrawal", "Daily limit", "Review above", "Sweep threshold", ""], r.assets.map(row), "No assets yet."),
        h("p", { class: "small muted" }, "An empty box is the wallet's default."),
      );
    } catch (e) {
      replace(list, state("error", problem(e)));
    }
  }

  // Listing an asset.
  const asset = input("new-asset", { required: "true", placeholder: "LINK" });
  const precision = input("new-asset-precision", { required: "true", inputmode: "numeric", placeholder: "8" });
  const kind = h("select", { id: "new-asset-kind", name: "kind" }, h("option", { value: "" }, "none"), h("option", { value: "native" }, "native"), h("option", { value: "erc20" }, "erc20"));
  const contract = input("new-asset-contract", { placeholder: "0x… (erc20)" });
  const decimals = input("new-asset-decimals", { inputmode: "numeric", placeholder: "18" });
  const created = h("div", { class: "message", role: "status" });
  const form = h(
    "form",
    { class: "card", "aria-labelledby": "new-asset-title", novalidate: true },
    h("h2", { id: "new-asset-title" }, "List an asset"),
    h("div", { class: "grid-fields" }, field("Asset", asset), field("Precision", precision), field("Chain", kind), field("Contract", contract), field("Token decimals", decimals)),
    h("button", { type: "submit" }, "List asset"),
    created,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body: Record<string, unknown> = { asset: asset.value.trim(), precision: Number(precision.value) };
    if (kind.value) {
      body.chain = { kind: kind.value, decimals: Number(decimals.value), ...(kind.value === "erc20" ? { contract: contract.value.trim() } : {}) };
    }
    try {
      const a = pendingOr(await api<Asset>("POST", "/v1/admin/assets", body));
      created.className = "message ok";
      created.textContent = a ? `${a.asset} is listed.` : "Sent; the engine has not answered yet.";
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
