// Build the widget into the Python package, print its size against the budget, and fail
// when it is over. `--check` builds in memory and fails when the committed file differs.
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { gzipSync } from "node:zlib";

import { build } from "esbuild";

const BUDGET = 6 * 1024; // bytes, minified + gzipped
const OUT = new URL("../webapp/widget/static/widget.js", import.meta.url);
const check = process.argv.includes("--check");

// Internal property names, shortened by the minifier to fit the budget. Only names that no
// DOM or built-in API we call shares, and that never appear in JSON sent to the server or in
// the public `Corrigenda` API; the browser tests run against this minified build.
const INTERNAL = [
  "o", "attempt", "batchSize", "timer", "busy", "halted", "soon", "wait", "drain", "settle",
  "storage", "onEvict", "save", "setTimer", "clearTimer", "base", "cap", "sent",
  "owners", "sender", "queue", "pk", "ui", "up", "down", "flagger", "panel", "live", "note",
  "pending", "viewed", "born", "seen", "info", "was", "editor", "finder", "choices", "opener",
  "attr", "reset", "render", "details", "picker", "visible", "narrow", "filterKey", "arrows",
  "choose", "decide", "close", "show", "update", "press", "expand", "safely",
  "record", "context",
];

const result = await build({
  entryPoints: [new URL("src/index.js", import.meta.url).pathname],
  bundle: true,
  minify: true,
  format: "iife",
  target: "es2022",
  charset: "utf8",
  legalComments: "none",
  write: false,
  mangleProps: new RegExp(`^(${INTERNAL.join("|")})$`),
});
const code = result.outputFiles[0].contents;
const gzipped = gzipSync(code, { level: 9 }).length;
const sri = `sha384-${createHash("sha384").update(code).digest("base64")}`;

console.log(`widget.js: ${code.length} bytes minified, ${gzipped} bytes gzipped`);
console.log(`budget: ${gzipped} / ${BUDGET} bytes (${((100 * gzipped) / BUDGET).toFixed(1)} %)`);
console.log(`integrity: ${sri}`);
if (gzipped > BUDGET) {
  console.error(`FAIL: over the ${BUDGET}-byte gzip budget by ${gzipped - BUDGET} bytes`);
  process.exit(1);
}

if (check) {
  let committed = null;
  try {
    committed = readFileSync(OUT);
  } catch {}
  if (!committed || !Buffer.from(code).equals(committed)) {
    console.error("FAIL: webapp/widget/static/widget.js differs from a fresh build of widgets/src;");
    console.error("      run `npm run build` in widgets/ and commit the result.");
    process.exit(1);
  }
  console.log("committed build matches the sources");
} else {
  writeFileSync(OUT, code);
  console.log(`wrote ${OUT.pathname}`);
}
