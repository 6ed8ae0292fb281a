import { defineConfig } from "vite";

// Hashed file names under assets/ (served immutable); one module script, no inline code, so
// the page runs under a CSP of script-src 'self' (docs/web.md).
export default defineConfig({
  base: "/",
  build: {
    outDir: "dist",
    assetsDir: "assets",
    sourcemap: false,
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    chunkSizeWarningLimit: 400,
  },
});
