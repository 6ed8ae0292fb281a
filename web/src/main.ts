import "./style.css";
import { isAdmin, onSessionChange, refresh, signedIn, logout } from "./api";
import { h, replace } from "./dom";
import { authenticate, dropSession, onFeedStatus, startFeed } from "./feed";
import { loginPage, signupPage } from "./pages/auth";
import { marketsPage } from "./pages/markets";
import { marketPage } from "./pages/market";
import { walletPage } from "./pages/wallet";
import { historyPage } from "./pages/history";
import { keysPage } from "./pages/keys";
import { consolePage } from "./pages/console";
import { go, notice } from "./nav";

/** A page draws itself into ``main`` and returns what stops its subscriptions. */
export type Page = (main: HTMLElement, arg: string) => (() => void) | void;

const ROUTES: Record<string, { page: Page; private?: boolean }> = {
  markets: { page: marketsPage },
  market: { page: marketPage },
  login: { page: loginPage },
  signup: { page: signupPage },
  wallet: { page: walletPage, private: true },
  history: { page: historyPage, private: true },
  keys: { page: keysPage, private: true },
  console: { page: consolePage, private: true },
};

const main = document.getElementById("main") as HTMLElement;
const nav = document.getElementById("nav") as HTMLElement;
let stopPage: (() => void) | void;
let carried: string | null = null; // a notice for the next page (why it came)

function drawNav(): void {
  const here = window.location.hash.split("/")[1] ?? "markets";
  const link = (name: string, text: string) =>
    h("a", { href: `#/${name}`, "aria-current": here === name ? "page" : undefined }, text);
  replace(
    nav,
    link("markets", "Markets"),
    signedIn()
      ? [
          link("wallet", "Wallet"),
          link("history", "Orders"),
          link("keys", "API keys"),
          isAdmin() ? link("console", "Console") : null,
          h("button", { type: "button", class: "link", id: "logout", onclick: () => void doLogout() }, "Log out"),
        ]
      : [link("login", "Log in"), link("signup", "Sign up")],
  );
}

async function doLogout(): Promise<void> {
  await logout();
  dropSession();
  go("#/login");
}

function route(): void {
  const [, name = "markets", ...rest] = window.location.hash.split("/");
  const entry = ROUTES[name] ?? ROUTES.markets;
  if (entry.private && !signedIn()) {
    sessionStorage.setItem("after-login", window.location.hash);
    window.location.hash = "#/login";
    return;
  }
  if (stopPage) stopPage();
  notice(carried);
  carried = null;
  drawNav();
  main.replaceChildren();
  stopPage = entry.page(main, decodeURIComponent(rest.join("/")));
  main.focus({ preventScroll: true });
}

onSessionChange(() => {
  drawNav();
  authenticate();
});

window.addEventListener("session-expired", () => {
  if (window.location.hash.startsWith("#/login")) return; // told already (requests in parallel)
  sessionStorage.setItem("after-login", window.location.hash);
  dropSession();
  carried = "Your session has ended. Log in again.";
  go("#/login");
});

window.addEventListener("offline", () => notice("You are offline: what you see may be out of date."));
window.addEventListener("online", () => notice(null));

const status = document.getElementById("feed-status") as HTMLElement;
onFeedStatus((s) => {
  status.dataset.state = s;
  status.textContent = { idle: "", live: "Live", connecting: "Connecting…", reconnecting: "Reconnecting…" }[s];
});

async function boot(): Promise<void> {
  // The session survives a reload through the HttpOnly refresh cookie: trade it for a new
  // access token before drawing anything private.
  await refresh();
  await startFeed();
  if (!window.location.hash) window.location.hash = "#/markets";
  // Pages are drawn only from here on: a hash change while the session was being restored
  // (a link followed, a redirect) is drawn once by the route() below, not twice, so a
  // second draw cannot wipe a form someone has started to fill.
  window.addEventListener("hashchange", route);
  route();
}

void boot();
