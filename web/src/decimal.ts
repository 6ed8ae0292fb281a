// Exact decimals: amounts and prices are the API's strings and are computed with big.js, never
// with floats (the chart is the one place they become numbers, for drawing only).
import Big from "big.js";

Big.DP = 30;
Big.RM = Big.roundDown;
Big.NE = -40;
Big.PE = 40;

export { Big };

export function isDecimal(text: string): boolean {
  return /^(0|[1-9]\d*)(\.\d+)?$/.test(text) || /^0?\.\d+$/.test(text);
}

export function dec(text: string): Big {
  return new Big(text);
}

/** Whether ``value`` is a whole multiple of ``unit``. */
export function multipleOf(value: Big, unit: string): boolean {
  return value.mod(unit).eq(0);
}

/** ``value`` rounded down to a multiple of ``unit``, as a plain string. */
export function floorTo(value: Big, unit: string): string {
  const u = new Big(unit);
  return value.div(u).round(0, Big.roundDown).times(u).toFixed();
}

export function decimals(unit: string): number {
  const dot = unit.indexOf(".");
  return dot < 0 ? 0 : unit.length - dot - 1;
}

/** A change ratio as a signed percentage with two decimals (``"+1.25%"``). */
export function percent(change: string | null | undefined): string {
  if (change === null || change === undefined || change === "") return "–";
  const p = new Big(change).times(100);
  return `${p.gte(0) ? "+" : ""}${p.toFixed(2)}%`;
}

export function sign(change: string | null | undefined): "up" | "down" | "" {
  if (!change) return "";
  const c = new Big(change);
  return c.gt(0) ? "up" : c.lt(0) ? "down" : "";
}
