// The books' audit, run now (GET /v1/admin/audit); the scheduled audits' results
// (GET /v1/admin/audits) and the admin action log (GET /v1/admin/actions) where the exchange
// has them, else "not available".
import { api } from "../../api";
import { dateTime, h, replace, state } from "../../dom";
import { missingRoute, notAvailable, problem, table } from "./shared";

interface Mismatch {
  kind: string;
  asset: string;
  user_id?: string;
  actual?: string;
  expected?: string;
  message: string;
}

interface Audit {
  ok: boolean;
  checked_at: string;
  seq: number;
  assets: Record<string, { balances: string; fees: string; deposits: string; withdrawals: string; ok: boolean }>;
  mismatches: Mismatch[];
}

type Entry = Record<string, unknown>;

function verdict(ok: boolean): HTMLElement {
  return h("strong", { class: ok ? "good" : "bad" }, ok ? "Balanced" : "Mismatch");
}

function text(v: unknown): string {
  if (v === null || v === undefined) return "";
  if (typeof v === "string") return /^\d{4}-\d\d-\d\dT/.test(v) ? dateTime(v) : v;
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  return JSON.stringify(v);
}

/** A list another part of the exchange serves, shown as it comes (its first 100 entries). */
function generic(box: HTMLElement, path: string, key: string, id: string, what: string, empty: string): void {
  api<Record<string, Entry[] | undefined>>("GET", path).then(
    (r) => {
      const entries = (r[key] ?? []).slice(0, 100);
      const heads = [...new Set(entries.flatMap((e) => Object.keys(e)))].slice(0, 8);
      replace(
        box,
        table(
          id,
          heads,
          entries.map((e) => ({ attrs: (typeof e.ok === "boolean" ? { "data-ok": String(e.ok) } : {}) as Record<string, string>, cells: heads.map((k) => (k === "ok" && typeof e.ok === "boolean" ? verdict(e.ok) : text(e[k]))) })),
          empty,
        ),
      );
    },
    (e) => replace(box, missingRoute(e) ? notAvailable(what) : state("error", problem(e))),
  );
}

export function auditPanel(panel: HTMLElement): void {
  const now = h("div", { id: "audit-now" }, state("loading", "Checking the books…"));
  const run = h("button", { type: "button", class: "small", onclick: () => void check() }, "Run again");
  const scheduled = h("div", { id: "audits" }, state("loading", "Loading…"));
  const actions = h("div", { id: "actions" }, state("loading", "Loading…"));
  panel.append(
    h("section", { class: "card", "aria-labelledby": "audit-title" }, h("div", { class: "row" }, h("h2", { id: "audit-title" }, "The books' audit"), run), now),
    h("section", { class: "card", "aria-labelledby": "audits-title" }, h("h2", { id: "audits-title" }, "Scheduled audits"), scheduled),
    h("section", { class: "card", "aria-labelledby": "actions-title" }, h("h2", { id: "actions-title" }, "Admin actions"), actions),
  );

  async function check(): Promise<void> {
    replace(now, state("loading", "Checking the books…"));
    try {
      const a = await api<Audit>("GET", "/v1/admin/audit");
      replace(
        now,
        h("p", { id: "audit-verdict", "data-ok": String(a.ok) }, verdict(a.ok), ` at ${dateTime(a.checked_at)}, after command ${a.seq}`),
        table(
          "audit-assets",
          ["Asset", "Balances", "Fees", "Deposits", "Settled withdrawals", ""],
          Object.entries(a.assets).map(([asset, t]) => ({
            attrs: { "data-asset": asset, "data-ok": String(t.ok) },
            cells: [asset, { num: t.balances }, { num: t.fees }, { num: t.deposits }, { num: t.withdrawals }, verdict(t.ok)],
          })),
          "No assets.",
        ),
        a.mismatches.length
          ? table(
              "audit-mismatches",
              ["Kind", "Asset", "User", "Actual", "Expected", ""],
              a.mismatches.map((m) => ({ cells: [m.kind, m.asset, m.user_id ?? "", { num: m.actual ?? "" }, { num: m.expected ?? "" }, m.message] })),
              "",
            )
          : h("p", { class: "small muted" }, "Every balance is accounted for: balances = deposits − settled withdrawals, nothing negative, every hold matches its orders and withdrawals."),
      );
    } catch (e) {
      replace(now, state("error", problem(e)));
    }
  }
  void check();
  generic(scheduled, "/v1/admin/audits", "audits", "audit-results", "Scheduled audits", "No scheduled audit has run yet.");
  generic(actions, "/v1/admin/actions", "actions", "admin-actions", "The admin action log", "No admin action yet.");
}
