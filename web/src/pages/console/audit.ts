// The books' audit, run now (GET /v1/admin/audit); the scheduled audits' stored results
// (GET /v1/admin/audits), a failing one with its differences, and a run of the books'
// audit on request (POST /v1/admin/audits/books); the hot and gas wallets' balances as the
// latest on-chain audit read them; the admin action log (GET /v1/admin/actions).
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

interface AuditRun {
  id: number;
  kind: string;
  ran_at: string;
  ok: boolean;
  differences: number;
  seq: number | null;
  report: { mismatches?: Mismatch[] };
}

interface AdminAction {
  id: number;
  at: string;
  admin_id: string;
  action: string;
  target: string | null;
  client_ip: string;
  request_id: string;
  details: unknown;
}

function verdict(ok: boolean): HTMLElement {
  return h("strong", { class: ok ? "good" : "bad" }, ok ? "Balanced" : "Mismatch");
}

function mismatches(id: string, list: Mismatch[]): HTMLElement {
  return table(
    id,
    ["Kind", "Asset", "User", "Actual", "Expected", ""],
    list.map((m) => ({ cells: [m.kind, m.asset, m.user_id ?? "", { num: m.actual ?? "" }, { num: m.expected ?? "" }, m.message] })),
    "",
  );
}

/** The scheduled (and requested) runs, newest first; a failing one opens to its differences. */
async function drawRuns(box: HTMLElement): Promise<void> {
  try {
    const r = await api<{ audits: AuditRun[] }>("GET", "/v1/admin/audits?limit=20");
    replace(
      box,
      table(
        "audit-results",
        ["Ran", "Audit", "Result", "Differences", "After command"],
        r.audits.map((a) => ({
          attrs: { "data-run": String(a.id), "data-kind": a.kind, "data-ok": String(a.ok) },
          cells: [
            dateTime(a.ran_at),
            a.kind === "books" ? "books" : "on chain",
            verdict(a.ok),
            a.ok ? { num: "0" } : h("details", {}, h("summary", {}, `${a.differences} (show)`), mismatches(`audit-run-${a.id}-mismatches`, a.report.mismatches ?? [])),
            { num: a.seq === null ? "" : String(a.seq) },
          ],
        })),
        "No scheduled audit has run yet.",
      ),
    );
  } catch (e) {
    replace(box, missingRoute(e) ? notAvailable("Scheduled audits") : state("error", problem(e)));
  }
}

interface Holding {
  units: string;
  amount: string;
}

interface Wallets {
  hot: { address: string; balances: Record<string, Holding> };
  gas: { address: string; balances: Record<string, Holding> } | null;
}

/** What the hot and gas wallets held at the latest on-chain audit (kept with its run). */
async function drawWallets(box: HTMLElement): Promise<void> {
  try {
    const r = await api<{ audits: (AuditRun & { report: { wallets?: Wallets } })[] }>("GET", "/v1/admin/audits?kind=chain&limit=1");
    const run = r.audits[0];
    const wallets = run?.report.wallets;
    if (!run || !wallets) {
      replace(box, state("empty", "No on-chain audit has read the wallets yet."));
      return;
    }
    const rows = [
      ["hot", "Hot wallet (pays withdrawals)", wallets.hot] as const,
      ["gas", "Gas wallet (tops up deposit addresses)", wallets.gas] as const,
    ].flatMap(([key, name, w]) =>
      w
        ? Object.entries(w.balances).map(([asset, held]) => ({
            attrs: { "data-wallet": key, "data-asset": asset },
            cells: [name, h("code", { class: "hash", title: w.address }, w.address), asset, { num: held.amount }],
          }))
        : [],
    );
    replace(box, h("p", { class: "small muted" }, `As the on-chain audit read them at ${dateTime(run.ran_at)}.`), table("wallets", ["Wallet", "Address", "Asset", "Balance"], rows, "No wallet."));
  } catch (e) {
    replace(box, missingRoute(e) ? notAvailable("The wallets' balances") : state("error", problem(e)));
  }
}

function details(v: unknown): string {
  if (v === null || v === undefined) return "";
  const text = typeof v === "string" ? v : JSON.stringify(v);
  return text.length > 200 ? `${text.slice(0, 199)}…` : text;
}

/** The admin action log, newest first (its latest 100). */
async function drawActions(box: HTMLElement): Promise<void> {
  try {
    const r = await api<{ actions: AdminAction[] }>("GET", "/v1/admin/actions?limit=100");
    replace(
      box,
      table(
        "admin-actions",
        ["When", "Admin", "Action", "Target", "From", "Details"],
        r.actions.map((a) => ({
          attrs: { "data-action": a.action, "data-target": a.target ?? "" },
          cells: [
            dateTime(a.at),
            h("code", { class: "hash", title: a.admin_id }, a.admin_id),
            h("span", { class: "action" }, a.action),
            a.target ? h("code", { class: "hash", title: a.target }, a.target) : "",
            a.client_ip,
            a.details === null || a.details === undefined ? "" : h("details", {}, h("summary", {}, "show"), h("code", { class: "preview" }, details(a.details))),
          ],
        })),
        "No admin action yet.",
      ),
    );
  } catch (e) {
    replace(box, missingRoute(e) ? notAvailable("The admin action log") : state("error", problem(e)));
  }
}

export function auditPanel(panel: HTMLElement): void {
  const now = h("div", { id: "audit-now" }, state("loading", "Checking the books…"));
  const run = h("button", { type: "button", class: "small", onclick: () => void check() }, "Run again");
  const scheduled = h("div", { id: "audits" }, state("loading", "Loading…"));
  const runMessage = h("div", { class: "message", role: "status", id: "audit-run-message" });
  const runNow = h("button", { type: "button", class: "small", id: "run-books-audit", onclick: () => void runBooks() }, "Run the books' audit now");
  const actions = h("div", { id: "actions" }, state("loading", "Loading…"));
  const wallets = h("div", { id: "wallets-box" }, state("loading", "Loading…"));
  panel.append(
    h("section", { class: "card", "aria-labelledby": "audit-title" }, h("div", { class: "row" }, h("h2", { id: "audit-title" }, "The books' audit"), run), now),
    h("section", { class: "card", "aria-labelledby": "audits-title" }, h("div", { class: "row" }, h("h2", { id: "audits-title" }, "Scheduled audits"), runNow), runMessage, scheduled),
    h("section", { class: "card", "aria-labelledby": "wallets-title" }, h("h2", { id: "wallets-title" }, "The exchange's wallets"), wallets),
    h("section", { class: "card", "aria-labelledby": "actions-title" }, h("h2", { id: "actions-title" }, "Admin actions"), actions),
  );

  // Stored and alerted as a scheduled run is (POST /v1/admin/audits/books); an admin action.
  async function runBooks(): Promise<void> {
    try {
      const run = await api<AuditRun>("POST", "/v1/admin/audits/books");
      runMessage.className = `message ${run.ok ? "ok" : "error"}`;
      runMessage.textContent = run.ok ? "The books' audit ran: balanced." : `The books' audit ran: ${run.differences} difference${run.differences === 1 ? "" : "s"}.`;
    } catch (e) {
      runMessage.className = "message error";
      runMessage.textContent = problem(e);
    }
    await Promise.all([drawRuns(scheduled), drawActions(actions)]);
  }

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
          ? mismatches("audit-mismatches", a.mismatches)
          : h("p", { class: "small muted" }, "Every balance is accounted for: balances = deposits − settled withdrawals, nothing negative, every hold matches its orders and withdrawals."),
      );
    } catch (e) {
      replace(now, state("error", problem(e)));
    }
  }
  void check();
  void drawRuns(scheduled);
  void drawWallets(wallets);
  void drawActions(actions);
}
