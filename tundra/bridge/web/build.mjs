// Copies the xterm.js dist files from node_modules into tundra/bridge/web/static/
// (git-ignored, shipped in the wheel). Run via `npm ci && npm run build`.
import { copyFileSync, mkdirSync, existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..", "..", "..");
const out = join(here, "static");
const files = [
  ["@xterm/xterm/lib/xterm.mjs", "xterm.mjs"],
  ["@xterm/xterm/css/xterm.css", "xterm.css"],
  ["@xterm/addon-fit/lib/addon-fit.mjs", "addon-fit.mjs"],
  ["@xterm/xterm/LICENSE", "LICENSE.xterm.txt"],
];
mkdirSync(out, { recursive: true });
for (const [src, dst] of files) {
  const from = join(root, "node_modules", src);
  if (!existsSync(from)) {
    console.error(`missing ${from}: run \`npm ci\` first`);
    process.exit(1);
  }
  copyFileSync(from, join(out, dst));
  console.log(`copied ${src} -> tundra/bridge/web/static/${dst}`);
}
