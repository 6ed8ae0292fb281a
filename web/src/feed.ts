// The live feed (docs/ws.md): one WebSocket, reconnected with a backoff, every subscription
// made again after a reconnect; the order book kept by seq/prev_seq with a resync on a gap.
import { token } from "./api";

export type FeedStatus = "idle" | "connecting" | "live" | "reconnecting";
type Handler = (kind: "snapshot" | "update", data: any) => void;

interface Config {
  ws_url?: string;
}

let url = "";
let socket: WebSocket | null = null;
let status: FeedStatus = "idle";
let attempt = 0;
let authedWith: string | null = null;
let pingTimer: number | undefined;
const handlers = new Map<string, Set<Handler>>();
const statusListeners = new Set<(s: FeedStatus) => void>();
const PRIVATE = new Set(["orders", "balances"]);

export async function startFeed(): Promise<void> {
  let configured: Config = {};
  try {
    const resp = await fetch("/config.json", { cache: "no-store" });
    if (resp.ok) configured = (await resp.json()) as Config;
  } catch {
    // no config: the feed is at this origin
  }
  const here = new URL("/v1/ws", window.location.href);
  here.protocol = here.protocol === "https:" ? "wss:" : "ws:";
  url = configured.ws_url || here.toString();
}

export function feedStatus(): FeedStatus {
  return status;
}

export function onFeedStatus(fn: (s: FeedStatus) => void): () => void {
  statusListeners.add(fn);
  fn(status);
  return () => statusListeners.delete(fn);
}

function setStatus(s: FeedStatus): void {
  status = s;
  statusListeners.forEach((fn) => fn(s));
}

function sendJson(message: unknown): void {
  if (socket?.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
}

function connect(): void {
  setStatus(attempt === 0 ? "connecting" : "reconnecting");
  const ws = new WebSocket(url);
  socket = ws;
  authedWith = null;
  ws.onopen = () => {
    attempt = 0;
    setStatus("live");
    authenticate();
    for (const channel of handlers.keys()) {
      if (!PRIVATE.has(channel)) sendJson({ op: "subscribe", channel });
    }
    window.clearInterval(pingTimer);
    pingTimer = window.setInterval(() => sendJson({ op: "ping" }), 15000);
  };
  ws.onmessage = (event) => onMessage(JSON.parse(String(event.data)));
  ws.onclose = () => {
    window.clearInterval(pingTimer);
    if (socket !== ws) return;
    if (handlers.size === 0) {
      // Nothing to listen to (the service closes idle sockets): connect again when needed.
      socket = null;
      setStatus("idle");
      return;
    }
    setStatus("reconnecting");
    const delay = Math.min(10000, 500 * 2 ** attempt) * (0.5 + Math.random() / 2);
    attempt += 1;
    window.setTimeout(connect, delay);
  };
}

/** Authenticate the socket with the current access token (again after a refresh), then
 * subscribe to the private channels asked for. */
export function authenticate(): void {
  const t = token();
  if (!t || t === authedWith || socket?.readyState !== WebSocket.OPEN) return;
  authedWith = t;
  sendJson({ op: "auth", token: t, id: "auth" });
}

function onMessage(msg: any): void {
  if (msg.type === "authenticated") {
    for (const channel of handlers.keys()) {
      if (PRIVATE.has(channel)) sendJson({ op: "subscribe", channel });
    }
    return;
  }
  if (msg.type === "error") {
    if (msg.code === "token_expired" || msg.code === "session_revoked") authedWith = null;
    return;
  }
  if ((msg.type === "snapshot" || msg.type === "update") && typeof msg.channel === "string") {
    handlers.get(msg.channel)?.forEach((fn) => fn(msg.type, msg.data));
  }
}

/** Listen to a channel; the returned function stops listening (unsubscribing when it was the
 * last listener). */
export function subscribe(channel: string, fn: Handler): () => void {
  if (socket === null && url) connect();
  let set = handlers.get(channel);
  if (!set) {
    set = new Set();
    handlers.set(channel, set);
    if (!PRIVATE.has(channel)) sendJson({ op: "subscribe", channel });
    else if (authedWith) sendJson({ op: "subscribe", channel });
    else authenticate();
  }
  set.add(fn);
  return () => {
    set.delete(fn);
    if (set.size === 0) {
      handlers.delete(channel);
      sendJson({ op: "unsubscribe", channel });
    }
  };
}

/** Subscribe again: a fresh snapshot (the depth resync). */
export function resubscribe(channel: string): void {
  sendJson({ op: "subscribe", channel });
}

/** Forget the socket's user (logout): a new connection, public channels only. */
export function dropSession(): void {
  for (const channel of PRIVATE) handlers.delete(channel);
  authedWith = null;
  const old = socket;
  socket = null;
  old?.close();
  if (handlers.size > 0) connect();
}

// ---------------------------------------------------------------------------- the order book

export type Level = [string, string];

export class Book {
  bids = new Map<string, string>();
  asks = new Map<string, string>();
  seq: number | null = null;
  resyncs = 0;
  private waiting = false;

  constructor(
    readonly market: string,
    private readonly changed: () => void,
  ) {}

  listen(): () => void {
    return subscribe(`depth:${this.market}`, (kind, data) => this.apply(kind, data));
  }

  apply(kind: "snapshot" | "update", data: { seq: number; prev_seq?: number; bids: Level[]; asks: Level[] }): void {
    if (kind === "snapshot") {
      this.bids = new Map(data.bids);
      this.asks = new Map(data.asks);
      this.seq = data.seq;
      this.waiting = false;
      this.changed();
      return;
    }
    if (this.waiting) return; // until the new snapshot
    if (this.seq === null || data.prev_seq !== this.seq) {
      // Updates were lost: ask for a new snapshot and ignore updates until it comes.
      this.waiting = true;
      this.resyncs += 1;
      resubscribe(`depth:${this.market}`);
      return;
    }
    for (const [side, levels] of [
      [this.bids, data.bids],
      [this.asks, data.asks],
    ] as const) {
      for (const [price, amount] of levels) {
        if (/^0(\.0*)?$/.test(amount)) side.delete(price);
        else side.set(price, amount);
      }
    }
    this.seq = data.seq;
    this.changed();
  }
}
