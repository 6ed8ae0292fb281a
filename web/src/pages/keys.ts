import { api, ApiError, needsCode, reauth } from "../api";
import { dateTime, h, replace, state } from "../dom";
import { words } from "../words";

interface ApiKey {
  id: string;
  label: string;
  scopes: string[];
  created_at: string | null;
}

const SCOPES = ["read", "trade", "withdraw"] as const;

export function keysPage(main: HTMLElement): void {
  const list = h("div", {}, state("loading", "Loading your keys…"));
  const label = h("input", { id: "key-label", name: "label", maxlength: "64", required: true, autocomplete: "off" });
  const boxes = SCOPES.map((s) => h("input", { type: "checkbox", name: "scope", value: s, checked: s === "read" }));
  const password = h("input", { id: "key-password", type: "password", name: "password", autocomplete: "current-password" });
  const code = h("input", { id: "key-code", name: "totp_code", inputmode: "numeric", autocomplete: "one-time-code" });
  const codeField = h("label", { class: "field" }, h("span", {}, "Code from your authenticator app"), code);
  codeField.hidden = true;
  const message = h("div", { class: "message", role: "status", id: "key-message" });
  const submit = h("button", { type: "submit" }, "Create key");
  const form = h(
    "form",
    { class: "card", "aria-labelledby": "keys-new", novalidate: true },
    h("h2", { id: "keys-new" }, "New API key"),
    h("label", { class: "field" }, h("span", {}, "Label"), label),
    h("fieldset", {}, h("legend", {}, "Scopes"), boxes.map((b) => h("label", { class: "check" }, b, ` ${b.value}`))),
    h("label", { class: "field" }, h("span", {}, "Your password (needed for trade or withdraw)"), password),
    codeField,
    submit,
    message,
  );
  main.append(h("section", { class: "card", "aria-labelledby": "keys-title" }, h("h1", { id: "keys-title" }, "API keys"), list), form);

  const load = () =>
    api<{ api_keys: ApiKey[] }>("GET", "/v1/api-keys").then(
      (r) =>
        replace(
          list,
          r.api_keys.length
            ? h(
                "div",
                { class: "scroll" },
                h(
                  "table",
                  { id: "keys" },
                  h("thead", {}, h("tr", {}, ...["Label", "Key", "Scopes", "Created", ""].map((t) => h("th", { scope: "col" }, t)))),
                  h(
                    "tbody",
                    {},
                    r.api_keys.map((k) =>
                      h(
                        "tr",
                        { "data-key": k.id },
                        h("td", {}, k.label),
                        h("td", {}, h("code", {}, k.id)),
                        h("td", {}, k.scopes.join(", ")),
                        h("td", {}, k.created_at ? dateTime(k.created_at) : ""),
                        h("td", {}, h("button", { type: "button", class: "small danger", "aria-label": `Revoke ${k.label}`, onclick: () => void revoke(k) }, "Revoke")),
                      ),
                    ),
                  ),
                ),
              )
            : state("empty", "No API keys."),
        ),
      (e) => replace(list, state("error", e instanceof ApiError ? e.message : String(e))),
    );
  const revoke = async (k: ApiKey) => {
    if (!window.confirm(`Revoke the key "${k.label}"? Programs using it stop working.`)) return;
    try {
      await api("DELETE", `/v1/api-keys/${encodeURIComponent(k.id)}`);
      void load();
    } catch (e) {
      replace(message, e instanceof ApiError ? words(e.code, e.message) : String(e));
    }
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const scopes = boxes.filter((b) => b.checked).map((b) => b.value);
    message.className = "message error";
    if (!label.value.trim()) return replace(message, "Give the key a label.");
    if (!scopes.length) return replace(message, "Choose at least one scope.");
    const sensitive = scopes.some((s) => s !== "read");
    if (sensitive && !password.value) return replace(message, "Trade and withdraw keys need your password.");
    submit.disabled = true;
    try {
      const totp = codeField.hidden ? undefined : code.value.trim();
      if (sensitive) await reauth(password.value, totp);
      const body: Record<string, unknown> = { label: label.value.trim(), scopes };
      if (totp) body.totp_code = totp;
      const k = await api<ApiKey & { secret: string }>("POST", "/v1/api-keys", body);
      password.value = "";
      code.value = "";
      message.className = "message ok";
      replace(
        message,
        h("p", {}, h("strong", {}, "Copy the secret now: it is shown only this once.")),
        h("p", {}, "Key: ", h("code", { id: "new-key-id" }, k.id)),
        h("p", {}, "Secret: ", h("code", { id: "new-key-secret" }, k.secret)),
      );
      label.value = "";
      void load();
    } catch (e) {
      if (needsCode(e)) {
        codeField.hidden = false;
        code.focus();
      }
      replace(message, e instanceof ApiError ? words(e.code, e.message) : String(e));
    } finally {
      submit.disabled = false;
    }
  });
  void load();
}
