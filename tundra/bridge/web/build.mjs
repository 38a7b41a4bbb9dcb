// Copies the xterm.js files listed under "tundraAssets" in package.json from node_modules
// into tundra/bridge/web/static/ (git-ignored, shipped in the wheel): `npm ci && npm run build`.
// Without Node.js, tools/fetch_web_assets.py (`make web`) produces the same files.
import { copyFileSync, mkdirSync, existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..", "..", "..");
const out = join(here, "static");
const assets = JSON.parse(readFileSync(join(root, "package.json"), "utf8")).tundraAssets;
mkdirSync(out, { recursive: true });
for (const [src, dst] of Object.entries(assets)) {
  const from = join(root, "node_modules", src);
  if (!existsSync(from)) {
    console.error(`missing ${from}: run \`npm ci\` first`);
    process.exit(1);
  }
  copyFileSync(from, join(out, dst));
  console.log(`copied ${src} -> tundra/bridge/web/static/${dst}`);
}
