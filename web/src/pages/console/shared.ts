// What the console's pages share: a table from rows, an error in words, the "not available"
// state of a route this exchange does not have (404 from a route another part adds).
import { ApiError } from "../../api";
import { h, state } from "../../dom";
import { words } from "../../words";

export function problem(e: unknown): string {
  return e instanceof ApiError ? words(e.code, e.message) : String(e);
}

/** A 404 ``not_found`` of the route itself (not of a thing it looked up). */
export function missingRoute(e: unknown): boolean {
  return e instanceof ApiError && e.status === 404 && (e.code === "not_found" || e.code === "http_404");
}

export function notAvailable(what: string): HTMLElement {
  return h("p", { class: "state empty not-available", role: "status" }, `${what}: not available on this exchange yet.`);
}

export type Cell = string | Node | { num: string };

export function table(id: string, heads: string[], rows: { attrs?: Record<string, string>; cells: Cell[] }[], empty: string): HTMLElement {
  if (!rows.length) return state("empty", empty);
  return h(
    "div",
    { class: "scroll" },
    h(
      "table",
      { id },
      h("thead", {}, h("tr", {}, heads.map((t) => h("th", { scope: "col" }, t)))),
      h(
        "tbody",
        {},
        rows.map((r) =>
          h(
            "tr",
            r.attrs ?? {},
            r.cells.map((c) => (typeof c === "object" && "num" in c ? h("td", { class: "num" }, c.num) : h("td", {}, c))),
          ),
        ),
      ),
    ),
  );
}

export function field(label: string, input: HTMLInputElement | HTMLSelectElement): HTMLElement {
  return h("label", { class: "field" }, h("span", {}, label), input);
}

export function input(id: string, attrs: Record<string, string> = {}): HTMLInputElement {
  return h("input", { id, name: id, autocomplete: "off", ...attrs });
}

/** What a write answered: the thing now, or 202 while the matcher has not answered yet. */
export function pendingOr<T>(answer: T | { status: "pending"; command_id: string }): T | null {
  return answer && typeof answer === "object" && "status" in answer && answer.status === "pending" && "command_id" in answer
    ? null
    : (answer as T);
}
