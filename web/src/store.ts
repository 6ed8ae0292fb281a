// What several pages share: the markets, the assets, the user's balances (kept live).
import { api, signedIn } from "./api";
import { subscribe } from "./feed";

export interface Market {
  market: string;
  base: string;
  quote: string;
  tick: string;
  step: string;
  min_amount: string;
  min_notional: string;
  maker_fee: string;
  taker_fee: string;
  status: string;
}

export interface Ticker {
  market: string;
  last: string | null;
  open: string | null;
  high: string | null;
  low: string | null;
  volume: string;
  quote_volume: string;
  change: string | null;
  trades: number;
}

export interface Chain {
  kind: string;
  confirmations?: number;
  min_deposit?: string;
  withdrawal_fee?: string;
  min_withdrawal?: string;
  withdrawal_daily_limit?: string;
}

export interface Asset {
  asset: string;
  precision: number;
  chain: Chain | null;
}

export type Balance = { available: string; frozen: string };

let markets: Promise<Market[]> | null = null;
let assets: Promise<Asset[]> | null = null;

export function loadMarkets(): Promise<Market[]> {
  markets ??= api<{ markets: Market[] }>("GET", "/v1/markets").then((r) => r.markets);
  markets.catch(() => (markets = null));
  return markets;
}

export function loadAssets(): Promise<Asset[]> {
  assets ??= api<{ assets: Asset[] }>("GET", "/v1/assets").then((r) => r.assets);
  assets.catch(() => (assets = null));
  return assets;
}

/** The balances, read once and then kept by the live feed; ``fn`` hears every change. */
export function watchBalances(fn: (b: Record<string, Balance>) => void, failed: (e: unknown) => void): () => void {
  const balances: Record<string, Balance> = {};
  let stopped = false;
  const stop = subscribe("balances", (_kind, data: { asset: string; available: string; frozen: string }[]) => {
    for (const b of data) balances[b.asset] = { available: b.available, frozen: b.frozen };
    fn({ ...balances });
  });
  if (signedIn()) {
    api<Record<string, Balance>>("GET", "/v1/balances").then(
      (read) => {
        if (stopped) return;
        for (const [asset, b] of Object.entries(read)) balances[asset] ??= b;
        fn({ ...balances });
      },
      (e) => failed(e),
    );
  }
  return () => {
    stopped = true;
    stop();
  };
}

export function percentOf(t: Ticker): string | null {
  if (t.change === null || !t.open || /^0(\.0*)?$/.test(t.open)) return null;
  return t.change;
}
