// Withdrawals waiting for review (above an asset's review threshold): approve (the sender
// signs it) or reject (refunded). GET /v1/admin/withdrawals, POST …/{id}/approve|reject; both
// need the admin's recent proof, so the page asks for the password (and the code when two-factor
// is on). An exchange without these routes shows "not available".
import { api, ApiError, needsCode, reauth } from "../../api";
import { dateTime, h, replace, state } from "../../dom";
import { field, input, missingRoute, notAvailable, problem, table } from "./shared";

interface Reviewed {
  id: string;
  user_id: string;
  asset: string;
  amount: string;
  fee: string;
  address: string;
  state: string;
  error: string | null;
  held: boolean;
  reviewed_by: string | null;
  reviewed_at: string | null;
  created_at: string | null;
}

const STATES = ["review", "requested", "rejected", "signed", "broadcast", "confirmed", "failed", "refunded"];

export function reviewPanel(panel: HTMLElement): void {
  const list = h("div", {}, state("loading", "Loading withdrawals…"));
  const which = h("select", { id: "review-state", "aria-label": "Withdrawals in state" }, STATES.map((s) => h("option", { value: s }, s === "review" ? "waiting for review" : s)));
  const password = input("review-password", { type: "password", autocomplete: "current-password" });
  const code = input("review-code", { inputmode: "numeric", autocomplete: "one-time-code" });
  const codeField = field("Code from your authenticator app", code);
  codeField.hidden = true;
  const message = h("div", { class: "message", role: "status", id: "review-message" });
  const proof = h("div", { class: "row proof" }, field("Your password (to approve or reject)", password), codeField);
  panel.append(
    h(
      "section",
      { class: "card", "aria-labelledby": "review-title" },
      h("div", { class: "row" }, h("h2", { id: "review-title" }, "Withdrawal review"), which),
      proof,
      message,
      list,
    ),
  );
  const say = (text: string, ok: boolean) => {
    message.className = `message ${ok ? "ok" : "error"}`;
    message.textContent = text;
  };

  const decide = async (w: Reviewed, verdict: "approve" | "reject") => {
    const what = verdict === "approve" ? "Approve (the exchange sends it)" : "Reject (the user is refunded)";
    if (!window.confirm(`${what}: ${w.amount} ${w.asset} to ${w.address}?`)) return;
    const body: Record<string, string> = {};
    if (!codeField.hidden && code.value) body.totp_code = code.value.trim();
    try {
      if (password.value) await reauth(password.value, body.totp_code);
      const now = await api<Reviewed>("POST", `/v1/admin/withdrawals/${encodeURIComponent(w.id)}/${verdict}`, body);
      say(`${w.amount} ${w.asset} to ${w.address}: ${verdict === "approve" ? "approved" : "rejected"} (${now.state}).`, true);
    } catch (e) {
      if (needsCode(e)) {
        codeField.hidden = false;
        say("Enter the code from your authenticator app, then choose again.", false);
      } else if (e instanceof ApiError && e.code === "fresh_auth_required") {
        say("Enter your password to approve or reject.", false);
        password.focus();
      } else {
        say(problem(e), false);
      }
    }
    await load();
  };

  let again: number | undefined;
  async function load(): Promise<void> {
    window.clearTimeout(again);
    try {
      const r = await api<{ withdrawals: Reviewed[] }>("GET", `/v1/admin/withdrawals?state=${encodeURIComponent(which.value)}`);
      const waiting = which.value === "review";
      // One whose funds the matcher has not held yet cannot be decided: look again shortly.
      if (waiting && r.withdrawals.some((w) => !w.held)) {
        again = window.setTimeout(() => {
          if (panel.isConnected) void load();
        }, 2000);
      }
      replace(
        list,
        table(
          "review-withdrawals",
          ["Asked", "User", "Amount", "Fee", "Address", "State", waiting ? "" : "Reviewed by"],
          r.withdrawals.map((w) => ({
            attrs: { "data-withdrawal": w.id, "data-state": w.state },
            cells: [
              w.created_at ? dateTime(w.created_at) : "",
              h("a", { href: `#/console/users/${encodeURIComponent(w.user_id)}` }, h("code", {}, w.user_id)),
              { num: `${w.amount} ${w.asset}` },
              { num: w.fee },
              h("code", {}, w.address),
              w.held || !waiting ? w.state + (w.error ? ` (${w.error})` : "") : "review (funds not held yet)",
              waiting
                ? h(
                    "span",
                    { class: "actions" },
                    h("button", { type: "button", class: "small", disabled: !w.held, onclick: () => void decide(w, "approve") }, "Approve"),
                    h("button", { type: "button", class: "small danger", disabled: !w.held, onclick: () => void decide(w, "reject") }, "Reject"),
                  )
                : (w.reviewed_by ?? ""),
            ],
          })),
          waiting ? "No withdrawal is waiting for review." : "None.",
        ),
      );
    } catch (e) {
      proof.hidden = missingRoute(e);
      replace(list, missingRoute(e) ? notAvailable("Withdrawal review") : state("error", problem(e)));
    }
  }
  which.addEventListener("change", () => void load());
  void load();
}
