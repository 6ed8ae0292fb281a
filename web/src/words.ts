// The API's and the engine's codes in words a person reads.
const WORDS: Record<string, string> = {
  insufficient_funds: "Not enough available balance for this order.",
  would_take: "Post-only: this price would trade at once, so the order was not placed.",
  fok_not_filled: "Fill-or-kill: the book could not fill the whole amount, so nothing traded.",
  duplicate_client_order_id: "An open order already has this client id.",
  unknown_market: "This market does not exist.",
  market_halted: "Trading in this market is halted.",
  account_disabled: "This account is disabled. Contact the exchange's support.",
  bad_price: "The price is not valid.",
  bad_tick: "The price must be a multiple of the market's tick.",
  bad_amount: "The amount is not valid.",
  bad_step: "The amount must be a multiple of the market's step.",
  below_min_amount: "The amount is below the market's minimum.",
  below_min_notional: "The order's total is below the market's minimum.",
  invalid_order: "The order is not valid.",
  no_liquidity: "Nothing in the book to trade against.",
  ioc_expired: "The rest of the order was cancelled (immediate-or-cancel).",
  self_trade_prevented: "Cancelled: it would have traded with your own order.",
  cancelled_by_user: "Cancelled by you.",
  order_not_found: "The order is no longer open.",
  invalid_credentials: "Wrong email or password.",
  email_taken: "This email is already registered. Log in instead?",
  weak_password: "The password is too short.",
  invalid_email: "This is not a valid email address.",
  rate_limited: "Too many requests: wait a moment and try again.",
  too_many_requests: "Too many requests: wait a moment and try again.",
  fresh_auth_required: "Enter your password again to confirm.",
  below_min_withdrawal: "The amount is below the minimum withdrawal.",
  invalid_address: "This is not a valid address.",
  invalid_checksum: "The address's checksum (mixed case) is wrong; check it.",
  daily_limit_exceeded: "This would exceed the daily withdrawal limit.",
  totp_required: "Enter the code from your authenticator app.",
  invalid_totp_code: "That code is wrong or was already used.",
  session_revoked: "Your session ended. Log in again.",
  token_expired: "Your session expired. Log in again.",
  network: "The exchange cannot be reached. Check your connection; retrying will not double an order.",
};

export function words(code: string | null | undefined, fallback?: string): string {
  if (!code) return fallback ?? "Something went wrong.";
  return WORDS[code] ?? fallback ?? code.replace(/_/g, " ");
}
