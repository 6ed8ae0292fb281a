// The dead letters: commands that reached the dead-letter topic, what each is and why
// (GET /v1/admin/dead-letters), re-driven (published again as it was) or discarded
// (POST …/{id}/redrive|discard). Both are in the admin action log. A command the matcher
// refused would be refused again: it can only be discarded.
import { api } from "../../api";
import { dateTime, h, replace, state } from "../../dom";
import { missingRoute, notAvailable, problem, table } from "./shared";

interface DeadLetter {
  id: string;
  received_at: string;
  published_at: string | null;
  ordering_key: string;
  command_id: string | null;
  command_type: string | null;
  producer: string | null;
  reason: string;
  error: string | null;
  delivery_count: number | null;
  state: string;
  decided_by: string | null;
  decided_at: string | null;
  redrive_message_id: string | null;
  redrivable: boolean;
  preview: string;
}

const REASONS: Record<string, string> = {
  undecodable: "not a command the matcher can read",
  unsigned: "refused: not signed by a producer",
  unknown_producer: "refused: signed in the name of an unknown producer",
  bad_signature: "refused: its signature does not match",
  forbidden_command: "refused: its producer may not send this command",
  delivery_attempts: "never acknowledged by the matcher",
};

const STATES = ["held", "redriven", "discarded", "all"];

export function deadLettersPanel(panel: HTMLElement): void {
  const list = h("div", {}, state("loading", "Loading dead letters…"));
  const which = h("select", { id: "dead-letter-state", "aria-label": "Dead letters in state" }, STATES.map((s) => h("option", { value: s }, s === "held" ? "waiting for a decision" : s)));
  const message = h("div", { class: "message", role: "status", id: "dead-letter-message" });
  panel.append(
    h(
      "section",
      { class: "card", "aria-labelledby": "dead-letters-title" },
      h("div", { class: "row" }, h("h2", { id: "dead-letters-title" }, "Dead letters"), which),
      h(
        "p",
        { class: "small muted" },
        "Commands the matcher refused (forged or unreadable: discard them, and find who sent them) or never acknowledged (re-drive them once the cause is fixed: the matcher applies a command once, however often it comes).",
      ),
      message,
      list,
    ),
  );
  const say = (text: string, ok: boolean) => {
    message.className = `message ${ok ? "ok" : "error"}`;
    message.textContent = text;
  };

  const decide = async (d: DeadLetter, verb: "redrive" | "discard") => {
    const what = `${d.command_type ?? "message"} ${d.command_id ?? d.id}`;
    if (verb === "discard" && !window.confirm(`Discard ${what}? It is never applied.`)) return;
    try {
      const now = await api<DeadLetter>("POST", `/v1/admin/dead-letters/${encodeURIComponent(d.id)}/${verb}`);
      say(`${what}: ${verb === "redrive" ? "re-driven" : "discarded"} (${now.state}).`, true);
    } catch (e) {
      say(`${what}: ${problem(e)}`, false);
    }
    await load();
  };

  async function load(): Promise<void> {
    try {
      const query = which.value === "all" ? "" : `?state=${encodeURIComponent(which.value)}`;
      const r = await api<{ dead_letters: DeadLetter[] }>("GET", `/v1/admin/dead-letters${query}`);
      replace(
        list,
        table(
          "dead-letters",
          ["Received", "Command", "Producer", "Ordering key", "Why", "Command's text", "State", ""],
          r.dead_letters.map((d) => ({
            attrs: { "data-dead-letter": d.id, "data-command": d.command_id ?? "", "data-reason": d.reason, "data-state": d.state },
            cells: [
              dateTime(d.received_at),
              h("span", {}, d.command_type ?? "—", h("br"), h("code", {}, d.command_id ?? "")),
              d.producer ?? "none",
              h("code", { class: "hash", title: d.ordering_key }, d.ordering_key),
              h(
                "span",
                { class: "why" },
                h("strong", {}, d.reason),
                h("br"),
                // The matcher's own words when it gave them, else what the reason means.
                d.error || REASONS[d.reason] || "",
                !d.error && d.delivery_count !== null ? ` (${d.delivery_count} deliveries)` : "",
              ),
              h("details", {}, h("summary", {}, "show"), h("code", { class: "preview" }, d.preview)),
              d.state + (d.decided_by ? ` by ${d.decided_by}` : "") + (d.decided_at ? ` at ${dateTime(d.decided_at)}` : ""),
              d.state === "held"
                ? h(
                    "span",
                    { class: "actions" },
                    h(
                      "button",
                      { type: "button", class: "small", disabled: !d.redrivable, title: d.redrivable ? "" : "The matcher would refuse it again", onclick: () => void decide(d, "redrive") },
                      "Re-drive",
                    ),
                    h("button", { type: "button", class: "small danger", onclick: () => void decide(d, "discard") }, "Discard"),
                  )
                : "",
            ],
          })),
          which.value === "held" ? "No dead letter is waiting." : "None.",
        ),
      );
    } catch (e) {
      replace(list, missingRoute(e) ? notAvailable("Dead letters") : state("error", problem(e)));
    }
  }
  which.addEventListener("change", () => void load());
  void load();
}
