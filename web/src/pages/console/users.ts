// A user by id or email: who they are, their role and their balances (GET /v1/admin/users/…).
import { api } from "../../api";
import { dateTime, h, replace, state } from "../../dom";
import { field, input, problem, table } from "./shared";

interface AdminUser {
  user_id: string;
  email: string | null;
  role: string;
  created_at: string | null;
  balances: Record<string, { available: string; frozen: string }>;
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

  const look = async (value: string) => {
    replace(result, state("loading", "Looking up…"));
    try {
      const u = await api<AdminUser>("GET", `/v1/admin/users/${encodeURIComponent(value)}`);
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
        ),
        h("h3", {}, "Balances"),
        table("user-balances", ["Asset", "Available", "In orders and withdrawals"], rows, "No balances."),
        h(
          "p",
          { class: "small muted" },
          "Orders, deposits, withdrawals and sessions of a user are not in the admin API yet; the books' audit covers every account.",
        ),
      );
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
