import { ApiError, login, signup } from "../api";
import { h, replace } from "../dom";
import { go } from "../nav";
import { words } from "../words";

function field(label: string, input: HTMLInputElement): HTMLElement {
  return h("label", { class: "field" }, h("span", {}, label), input);
}

function afterLogin(): void {
  const next = sessionStorage.getItem("after-login");
  sessionStorage.removeItem("after-login");
  go(next && !next.startsWith("#/login") && !next.startsWith("#/signup") ? next : "#/markets");
}

export function loginPage(main: HTMLElement): void {
  const email = h("input", { type: "email", name: "email", autocomplete: "username", required: true });
  const password = h("input", { type: "password", name: "password", autocomplete: "current-password", required: true });
  // The second factor (TOTP): shown when the login asks for it.
  const code = h("input", { type: "text", name: "code", inputmode: "numeric", autocomplete: "one-time-code", pattern: "[0-9]{6}" });
  const codeField = field("Code from your authenticator app", code);
  codeField.hidden = true;
  const error = h("p", { class: "error", role: "alert" });
  const submit = h("button", { type: "submit" }, "Log in");
  const form = h(
    "form",
    { class: "card narrow", "aria-labelledby": "login-title" },
    h("h1", { id: "login-title" }, "Log in"),
    field("Email", email),
    field("Password", password),
    codeField,
    error,
    submit,
    h("p", {}, "No account? ", h("a", { href: "#/signup" }, "Sign up")),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    replace(error);
    try {
      const result = await login(email.value, password.value, codeField.hidden ? undefined : code.value);
      if (result.secondFactor) {
        codeField.hidden = false;
        code.focus();
        return;
      }
      afterLogin();
    } catch (e) {
      replace(error, e instanceof ApiError ? words(e.code, e.message) : String(e));
    } finally {
      submit.disabled = false;
    }
  });
  main.append(form);
  email.focus();
}

export function signupPage(main: HTMLElement): void {
  const email = h("input", { type: "email", name: "email", autocomplete: "username", required: true });
  const password = h("input", { type: "password", name: "password", autocomplete: "new-password", required: true, minlength: 8 });
  const error = h("p", { class: "error", role: "alert" });
  const submit = h("button", { type: "submit" }, "Create account");
  const form = h(
    "form",
    { class: "card narrow", "aria-labelledby": "signup-title" },
    h("h1", { id: "signup-title" }, "Sign up"),
    field("Email", email),
    field("Password (a long phrase is best)", password),
    error,
    submit,
    h("p", {}, "Have an account? ", h("a", { href: "#/login" }, "Log in")),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    replace(error);
    try {
      await signup(email.value, password.value);
      await login(email.value, password.value);
      afterLogin();
    } catch (e) {
      replace(error, e instanceof ApiError ? words(e.code, e.message) : String(e));
    } finally {
      submit.disabled = false;
    }
  });
  main.append(form);
  email.focus();
}
