// Moving between pages, and the banner over them.

export function go(hash: string): void {
  if (window.location.hash === hash) window.dispatchEvent(new HashChangeEvent("hashchange"));
  else window.location.hash = hash;
}

export function notice(text: string | null): void {
  const banner = document.getElementById("banner") as HTMLElement;
  banner.hidden = !text;
  banner.textContent = text ?? "";
}
