// The operator's console (#/console/...): users, markets, assets, withdrawal review, the
// audits and the admin action log, the dead letters. Only an admin's token shows it; every
// admin route checks the role again on the server (a demoted admin's token stops working at
// once).
import { isAdmin } from "../api";
import { h, state } from "../dom";
import { assetsPanel } from "./console/assets";
import { auditPanel } from "./console/audit";
import { deadLettersPanel } from "./console/deadletters";
import { marketsPanel } from "./console/markets";
import { reviewPanel } from "./console/review";
import { usersPanel } from "./console/users";

const TABS: Record<string, { title: string; draw: (panel: HTMLElement, arg: string) => void }> = {
  users: { title: "Users", draw: usersPanel },
  markets: { title: "Markets", draw: marketsPanel },
  assets: { title: "Assets", draw: assetsPanel },
  withdrawals: { title: "Withdrawal review", draw: reviewPanel },
  audit: { title: "Audit", draw: auditPanel },
  "dead-letters": { title: "Dead letters", draw: deadLettersPanel },
};

export function consolePage(main: HTMLElement, arg: string): void {
  if (!isAdmin()) {
    main.append(
      h(
        "section",
        { class: "card narrow", "aria-labelledby": "console-title" },
        h("h1", { id: "console-title" }, "Console"),
        state("error", "This page is for the exchange's operators."),
      ),
    );
    return;
  }
  const [tab = "users", ...rest] = arg.split("/");
  const here = TABS[tab] ? tab : "users";
  main.append(
    h("h1", { id: "console-title" }, "Console"),
    h(
      "nav",
      { class: "tabs", "aria-label": "Console" },
      Object.entries(TABS).map(([name, t]) => h("a", { href: `#/console/${name}`, "aria-current": name === here ? "page" : undefined }, t.title)),
    ),
  );
  const panel = h("div", { id: `console-${here}` });
  main.append(panel);
  TABS[here].draw(panel, rest.join("/"));
}
