import qrcode from "qrcode-generator";
import { api, ApiError, idempotencyKey, needsCode, reauth } from "../api";
import { Big, dec, isDecimal } from "../decimal";
import { dateTime, h, replace, state } from "../dom";
import { loadAssets, watchBalances, type Asset, type Balance } from "../store";
import { words } from "../words";

interface Deposit {
  id: string;
  asset: string;
  amount: string;
  tx_hash: string;
  confirmations: number;
  confirmations_required: number;
  status: string;
  created_at: string;
}

interface Withdrawal {
  id: string;
  asset: string;
  amount: string;
  fee: string;
  address: string;
  state: string;
  tx_hash: string | null;
  error: string | null;
  created_at: string;
}

const FINAL_WITHDRAWAL = new Set(["confirmed", "rejected", "failed", "refunded"]);
const POLL_MS = 2000;

export function walletPage(main: HTMLElement): () => void {
  const stops: (() => void)[] = [];
  const balancesBody = h("div", {}, state("loading", "Loading balances…"));
  const assetSelect = h("select", { id: "wallet-asset", name: "asset" });
  const deposit = h("div", { id: "deposit" });
  const withdraw = h("div", { id: "withdraw" });
  main.append(
    h("section", { class: "card", "aria-labelledby": "bal-title" }, h("h1", { id: "bal-title" }, "Balances"), balancesBody),
    h("section", { class: "card" }, h("label", { class: "field inline" }, h("span", {}, "Asset"), assetSelect)),
    h("div", { class: "two" }, deposit, withdraw),
  );

  let balances: Record<string, Balance> = {};
  let assets: Asset[] = [];
  const drawBalances = () => {
    const names = [...new Set([...assets.map((a) => a.asset), ...Object.keys(balances)])].sort();
    if (!names.length) return replace(balancesBody, state("empty", "No assets yet."));
    replace(
      balancesBody,
      h(
        "div",
        { class: "scroll" },
        h(
          "table",
          { class: "balances", id: "balances" },
          h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Asset"), h("th", { scope: "col", class: "num" }, "Available"), h("th", { scope: "col", class: "num" }, "In orders"), h("th", { scope: "col", class: "num" }, "Total"))),
          h(
            "tbody",
            {},
            names.map((n) => {
              const b = balances[n] ?? { available: "0", frozen: "0" };
              return h("tr", { "data-asset": n }, h("th", { scope: "row" }, n), h("td", { class: "num available" }, b.available), h("td", { class: "num frozen" }, b.frozen), h("td", { class: "num" }, dec(b.available).plus(b.frozen).toFixed()));
            }),
          ),
        ),
      ),
    );
  };
  stops.push(
    watchBalances(
      (b) => {
        balances = b;
        drawBalances();
        withdrawAvailable();
      },
      (e) => replace(balancesBody, state("error", e instanceof ApiError ? e.message : String(e))),
    ),
  );

  let withdrawAvailable = () => undefined as void;
  let stopAsset: (() => void) | null = null;
  const showAsset = () => {
    stopAsset?.();
    const asset = assets.find((a) => a.asset === assetSelect.value);
    if (!asset) return;
    const s1 = depositCard(deposit, asset);
    const s2 = withdrawCard(withdraw, asset, () => balances[asset.asset]?.available ?? "0", (fn) => (withdrawAvailable = fn));
    stopAsset = () => {
      s1();
      s2();
    };
  };
  assetSelect.addEventListener("change", showAsset);
  stops.push(() => stopAsset?.());

  loadAssets().then(
    (list) => {
      assets = list.filter((a) => a.chain);
      replace(assetSelect, assets.map((a) => h("option", { value: a.asset }, a.asset)));
      drawBalances();
      if (!assets.length) replace(deposit, state("empty", "No asset can be deposited yet."));
      else showAsset();
    },
    (e) => replace(deposit, state("error", e instanceof ApiError ? e.message : String(e))),
  );
  return () => stops.forEach((s) => s());
}

function poll(fn: () => Promise<boolean>): () => void {
  let stopped = false;
  let timer: number | undefined;
  const tick = async () => {
    let again = true;
    try {
      again = await fn();
    } catch {
      again = true; // shown by fn; try again
    }
    if (!stopped && again) timer = window.setTimeout(tick, POLL_MS);
  };
  void tick();
  return () => {
    stopped = true;
    window.clearTimeout(timer);
  };
}

function depositCard(el: HTMLElement, asset: Asset): () => void {
  const address = h("div", { class: "address" }, state("loading", "Loading your address…"));
  const list = h("div", {}, state("loading", "Loading deposits…"));
  const chain = asset.chain;
  replace(
    el,
    h(
      "section",
      { class: "card", "aria-labelledby": "dep-title" },
      h("h2", { id: "dep-title" }, `Deposit ${asset.asset}`),
      address,
      h("p", { class: "muted", id: "deposit-rules" }, `Credited after ${chain?.confirmations ?? "?"} confirmations. Minimum ${chain?.min_deposit ?? "0"} ${asset.asset}; less is not credited.`),
      h("h3", {}, "Your deposits"),
      list,
    ),
  );
  api<{ address: string; chain_id: number; kind: string; contract: string | null }>("GET", `/v1/deposits/address?asset=${asset.asset}`).then(
    (a) => {
      const qr = qrcode(0, "M");
      qr.addData(a.address);
      qr.make();
      const img = h("img", { src: qr.createDataURL(4, 8), alt: `QR code of the address ${a.address}`, width: "160", height: "160", class: "qr" });
      const copy = h("button", { type: "button", class: "small" }, "Copy");
      copy.addEventListener("click", () => void navigator.clipboard?.writeText(a.address).then(() => (copy.textContent = "Copied")));
      replace(
        address,
        img,
        h("div", {}, h("code", { id: "deposit-address" }, a.address), " ", copy, h("p", { class: "muted small" }, `Chain ${a.chain_id}${a.contract ? ` · token ${a.contract}` : ""}. Send only ${asset.asset} here.`)),
      );
    },
    (e) => replace(address, state("error", e instanceof ApiError ? e.message : String(e))),
  );
  return poll(async () => {
    try {
      const r = await api<{ deposits: Deposit[] }>("GET", `/v1/deposits?asset=${asset.asset}&limit=20`);
      if (!r.deposits.length) replace(list, state("empty", "No deposits yet."));
      else
        replace(
          list,
          h(
            "div",
            { class: "scroll" },
            h(
              "table",
              { id: "deposits" },
              h("thead", {}, h("tr", {}, ...["Time", "Amount", "Confirmations", "Status"].map((t) => h("th", { scope: "col" }, t)))),
              h(
                "tbody",
                {},
                r.deposits.map((d) =>
                  h("tr", { "data-status": d.status }, h("td", {}, dateTime(d.created_at)), h("td", { class: "num" }, d.amount), h("td", { class: "num" }, `${Math.min(d.confirmations, d.confirmations_required)}/${d.confirmations_required}`), h("td", {}, d.status.replace("_", " "))),
                ),
              ),
            ),
          ),
        );
    } catch (e) {
      replace(list, state("error", e instanceof ApiError ? e.message : String(e)));
    }
    return true;
  });
}

function withdrawCard(el: HTMLElement, asset: Asset, available: () => string, onBalance: (fn: () => void) => void): () => void {
  const chain = asset.chain;
  const fee = chain?.withdrawal_fee ?? "0";
  const address = h("input", { id: "withdraw-address", name: "address", autocomplete: "off", spellcheck: "false", placeholder: "0x…", required: true });
  const amount = h("input", { id: "withdraw-amount", name: "amount", inputmode: "decimal", autocomplete: "off", required: true });
  const password = h("input", { id: "withdraw-password", name: "password", type: "password", autocomplete: "current-password", required: true });
  const code = h("input", { id: "withdraw-code", name: "totp_code", inputmode: "numeric", autocomplete: "one-time-code" });
  const codeField = h("label", { class: "field" }, h("span", {}, "Code from your authenticator app"), code);
  codeField.hidden = true;
  const total = h("p", { id: "withdraw-total", class: "muted" });
  const avail = h("p", { class: "muted" });
  const message = h("p", { class: "message", role: "status", id: "withdraw-message" });
  const submit = h("button", { type: "submit" }, `Withdraw ${asset.asset}`);
  const list = h("div", {}, state("loading", "Loading withdrawals…"));
  const form = h(
    "form",
    { class: "card", "aria-labelledby": "wd-title", id: "withdraw-form", novalidate: true },
    h("h2", { id: "wd-title" }, `Withdraw ${asset.asset}`),
    h("label", { class: "field" }, h("span", {}, "To address"), address),
    h("label", { class: "field" }, h("span", {}, `Amount (${asset.asset})`), amount),
    h("p", { class: "muted" }, `Fee ${fee} ${asset.asset} · minimum ${chain?.min_withdrawal ?? "0"}${chain?.withdrawal_daily_limit ? ` · daily limit ${chain.withdrawal_daily_limit}` : ""}`),
    total,
    avail,
    h("label", { class: "field" }, h("span", {}, "Your password (to confirm)"), password),
    codeField,
    submit,
    message,
    h("h3", {}, "Your withdrawals"),
    list,
  );
  replace(el, form);
  const update = () => {
    replace(avail, `Available: ${available()} ${asset.asset}`);
    replace(total, isDecimal(amount.value) ? `Total taken from your balance: ${dec(amount.value).plus(fee).toFixed()} ${asset.asset}` : "");
  };
  onBalance(update);
  amount.addEventListener("input", update);
  update();

  let refreshList = () => undefined as void;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    message.className = "message error";
    if (!/^0x[0-9a-fA-F]{40}$/.test(address.value.trim())) return replace(message, "Enter an address: 0x and 40 hexadecimal digits.");
    if (!isDecimal(amount.value) || dec(amount.value).eq(0)) return replace(message, "Enter an amount.");
    if (chain?.min_withdrawal && dec(amount.value).lt(chain.min_withdrawal)) return replace(message, `The minimum is ${chain.min_withdrawal} ${asset.asset}.`);
    if (dec(amount.value).plus(fee).gt(new Big(available()))) return replace(message, `Not enough ${asset.asset}: the amount and the fee are more than ${available()} available.`);
    if (!password.value) return replace(message, "Enter your password to confirm.");
    submit.disabled = true;
    message.className = "message";
    replace(message, "Sending…");
    try {
      const totp = codeField.hidden ? undefined : code.value.trim();
      await reauth(password.value, totp);
      const body: Record<string, string> = { asset: asset.asset, amount: amount.value, address: address.value.trim() };
      if (totp) body.totp_code = totp;
      const w = await api<{ id?: string; withdrawal_id?: string; state: string }>("POST", "/v1/withdrawals", body, idempotencyKey());
      password.value = "";
      code.value = "";
      message.className = "message ok";
      replace(message, `Withdrawal ${w.id ?? w.withdrawal_id}: ${w.state}.`);
      refreshList();
    } catch (e) {
      message.className = "message error";
      if (needsCode(e)) {
        codeField.hidden = false;
        code.focus();
      }
      replace(message, e instanceof ApiError ? words(e.code, e.message) : String(e));
    } finally {
      submit.disabled = false;
    }
  });

  let last = "";
  const stop = poll(async () => {
    try {
      const r = await api<{ withdrawals: Withdrawal[] }>("GET", `/v1/withdrawals?asset=${asset.asset}&limit=20`);
      const key = JSON.stringify(r.withdrawals);
      if (key === last) return true;
      last = key;
      if (!r.withdrawals.length) replace(list, state("empty", "No withdrawals yet."));
      else
        replace(
          list,
          h(
            "div",
            { class: "scroll" },
            h(
              "table",
              { id: "withdrawals" },
              h("thead", {}, h("tr", {}, ...["Time", "Amount", "Fee", "Status", "Transaction"].map((t) => h("th", { scope: "col" }, t)))),
              h(
                "tbody",
                {},
                r.withdrawals.map((w) =>
                  h(
                    "tr",
                    { "data-state": w.state },
                    h("td", {}, dateTime(w.created_at)),
                    h("td", { class: "num" }, w.amount),
                    h("td", { class: "num" }, w.fee),
                    h("td", { class: FINAL_WITHDRAWAL.has(w.state) ? "" : "pending" }, w.state, w.error ? ` (${w.error})` : ""),
                    h("td", {}, w.tx_hash ? h("code", { class: "hash", title: w.tx_hash }, w.tx_hash) : "–"),
                  ),
                ),
              ),
            ),
          ),
        );
    } catch (e) {
      replace(list, state("error", e instanceof ApiError ? e.message : String(e)));
    }
    return true;
  });
  refreshList = () => {
    last = "";
  };
  return stop;
}
