// Builds the console into the Python package (src/fluxmq_dashboard/assets/):
// index.html, app.js and app.css, with fixed names and no source maps, so the same
// sources and lock file always give the same bytes (a test rebuilds and compares).
// FLUXMQ_DASHBOARD_OUT=<dir> writes elsewhere (what that test does).
import { build } from "esbuild";
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out =
  process.env.FLUXMQ_DASHBOARD_OUT || join(here, "..", "src", "fluxmq_dashboard", "assets");
mkdirSync(out, { recursive: true });

await build({
  entryPoints: { app: join(here, "src", "main.jsx") },
  bundle: true,
  minify: true,
  format: "iife",
  target: ["es2020"],
  jsx: "automatic",
  jsxImportSource: "preact",
  legalComments: "none",
  charset: "utf8",
  outdir: out,
  logLevel: "warning",
  define: { "process.env.NODE_ENV": '"production"' },
});
copyFileSync(join(here, "index.html"), join(out, "index.html"));

let total = 0;
const sizes = {};
for (const name of ["index.html", "app.js", "app.css"]) {
  const gz = gzipSync(readFileSync(join(out, name)), { level: 9 }).length;
  sizes[name] = gz;
  total += gz;
}
console.log(`bundle: ${total} bytes gzipped`, JSON.stringify(sizes));
