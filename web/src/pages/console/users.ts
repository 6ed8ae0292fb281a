// A user by id or email: who they are, their role, balances, open orders, latest deposits and
// withdrawals (GET /v1/admin/users/…), their live sessions (…/sessions).
import { api, ApiError, needsCode, reauth } from "../../api";
import { dateTime, h, replace, state } from "../../dom";
import { field, input, missingRoute, notAvailable, problem, table } from "./shared";

interface UserOrder {
  order_id: number;
  market: string;
  side: string;
  type: string;
  price: string | null;
  amount: string | null;
  filled: string;
  status: string;
  ts: number;
}

interface UserDeposit {
  ref: string;
  asset: string;
  amount: string;
  ts: number;
}

interface UserWithdrawal {
  id: string;
  asset: string;
  amount: string;
  fee: string;
  address: string;
  state: string;
  error: string | null;
  tx_hash: string | null;
  created_at: string | null;
}

interface AdminUser {
  user_id: string;
  email: string | null;
  role: string;
  created_at: string | null;
  disabled: boolean;
  balances: Record<string, { available: string; frozen: string }>;
  open_orders: UserOrder[];
  deposits: UserDeposit[];
  withdrawals: UserWithdrawal[];
}

interface UserSession {
  id: string;
  created_at: string | null;
  last_password_at: string | null;
  refresh_expires_at: string;
}

/** The user's logins that still work (GET /v1/admin/users/…/sessions); disabling ends them. */
async function drawSessions(userId: string, box: HTMLElement): Promise<void> {
  try {
    const r = await api<{ sessions: UserSession[] }>("GET", `/v1/admin/users/${encodeURIComponent(userId)}/sessions`);
    replace(
      box,
      table(
        "user-sessions",
        ["Session", "Logged in", "Password last given", "Can refresh until"],
        r.sessions.map((s) => ({
          attrs: { "data-session": s.id },
          cells: [h("code", {}, s.id), s.created_at ? dateTime(s.created_at) : "", s.last_password_at ? dateTime(s.last_password_at) : "", dateTime(s.refresh_expires_at)],
        })),
        "No live session.",
      ),
    );
  } catch (e) {
    replace(box, missingRoute(e) ? notAvailable("Sessions") : state("error", problem(e)));
  }
}

export function usersPanel(panel: HTMLElement, wanted: string): void {
  const who = input("user-lookup", { required: "true", placeholder: "alice@example.com or a user id", value: wanted });
  const result = h("div", { id: "user-result", "aria-live": "polite" });
  const form = h(
    "form",
    { class: "card", "aria-labelledby": "users-title", role: "search" },
    h("h2", { id: "users-title" }, "Look up a user"),
    h("div", { class: "row" }, field("Id or email", who), h("button", { type: "submit" }, "Look up")),
    result,
  );
  panel.append(form);

  // Disabling ends every session and deletes the user's API keys; both it and enabling need
  // the admin's recent proof (the password, and the code when asked).
  const access = (u: AdminUser): HTMLElement => {
    const password = input("access-password", { type: "password", autocomplete: "current-password" });
    const code = input("access-code", { inputmode: "numeric", autocomplete: "one-time-code" });
    const codeField = field("Code from your authenticator app", code);
    codeField.hidden = true;
    const message = h("div", { class: "message", role: "status", id: "access-message" });
    const verb = u.disabled ? "enable" : "disable";
    const act = async () => {
      if (verb === "disable" && !window.confirm(`Disable ${u.email ?? u.user_id}? Every session ends and their API keys are deleted.`)) return;
      try {
        if (password.value) await reauth(password.value, codeField.hidden ? undefined : code.value.trim());
        await api("POST", `/v1/admin/users/${encodeURIComponent(u.user_id)}/${verb}`);
        await look(u.email ?? u.user_id);
        const done = document.getElementById("access-message");
        if (done) {
          done.className = "message ok";
          done.textContent = verb === "disable" ? "Disabled: sessions ended, API keys deleted." : "Enabled: they can log in again.";
        }
      } catch (e) {
        message.className = "message error";
        if (needsCode(e)) {
          codeField.hidden = false;
          message.textContent = "Enter the code from your authenticator app, then again.";
        } else if (e instanceof ApiError && e.code === "fresh_auth_required") {
          message.textContent = "Enter your password, then again.";
          password.focus();
        } else {
          message.textContent = problem(e);
        }
      }
    };
    return h(
      "div",
      { class: "row proof" },
      field(`Your password (to ${verb})`, password),
      codeField,
      h("button", { type: "button", class: verb === "disable" ? "small danger" : "small", onclick: () => void act() }, verb === "disable" ? "Disable user" : "Enable user"),
      message,
    );
  };

  const look = async (value: string) => {
    replace(result, state("loading", "Looking up…"));
    try {
      const u = await api<AdminUser>("GET", `/v1/admin/users/${encodeURIComponent(value)}`);
      const sessionsBox = h("div", { id: "user-sessions-box" }, state("loading", "Loading sessions…"));
      const rows = Object.entries(u.balances).map(([asset, b]) => ({
        attrs: { "data-asset": asset },
        cells: [asset, { num: b.available }, { num: b.frozen }],
      }));
      replace(
        result,
        h(
          "dl",
          { class: "facts", id: "user-facts" },
          h("dt", {}, "User id"),
          h("dd", {}, h("code", { id: "user-id" }, u.user_id)),
          h("dt", {}, "Email"),
          h("dd", { id: "user-email" }, u.email ?? "—"),
          h("dt", {}, "Role"),
          h("dd", { id: "user-role" }, u.role),
          h("dt", {}, "Signed up"),
          h("dd", {}, u.created_at ? dateTime(u.created_at) : "—"),
          h("dt", {}, "Access"),
          h("dd", { id: "user-access", class: u.disabled ? "bad" : "good" }, u.disabled ? "Disabled" : "Active"),
        ),
        access(u),
        h("h3", {}, "Balances"),
        table("user-balances", ["Asset", "Available", "In orders and withdrawals"], rows, "No balances."),
        h("h3", {}, "Open orders"),
        table(
          "user-orders",
          ["Placed", "Market", "Side", "Type", "Price", "Amount", "Filled", "Status"],
          u.open_orders.map((o) => ({
            attrs: { "data-order": String(o.order_id) },
            cells: [dateTime(o.ts), o.market, o.side, o.type, { num: o.price ?? "market" }, { num: o.amount ?? "" }, { num: o.filled }, o.status],
          })),
          "No open orders.",
        ),
        h("h3", {}, "Deposits (latest 20)"),
        table(
          "user-deposits",
          ["Credited", "Asset", "Amount", "Reference"],
          u.deposits.map((d) => ({ cells: [dateTime(d.ts), d.asset, { num: d.amount }, h("code", {}, d.ref)] })),
          "No deposits.",
        ),
        h("h3", {}, "Withdrawals (latest 20)"),
        table(
          "user-withdrawals",
          ["Asked", "Asset", "Amount", "Fee", "Address", "State", "Transaction"],
          u.withdrawals.map((w) => ({
            attrs: { "data-withdrawal": w.id, "data-state": w.state },
            cells: [
              w.created_at ? dateTime(w.created_at) : "",
              w.asset,
              { num: w.amount },
              { num: w.fee },
              h("code", {}, w.address),
              w.state + (w.error ? ` (${w.error})` : ""),
              w.tx_hash ? h("code", {}, w.tx_hash) : "",
            ],
          })),
          "No withdrawals.",
        ),
        h("h3", {}, "Live sessions"),
        sessionsBox,
      );
      void drawSessions(u.user_id, sessionsBox);
    } catch (e) {
      replace(result, state("error", problem(e)));
    }
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = who.value.trim();
    if (!value) return;
    window.location.hash = `#/console/users/${encodeURIComponent(value)}`;
  });
  if (wanted) void look(wanted);
}
