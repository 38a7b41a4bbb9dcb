#!/usr/bin/env python3
"""Build the web page's third-party assets (xterm.js) from the npm registry, without npm.

Reads the exact versions and sha512 integrity hashes from package-lock.json, downloads each
package tarball from the npm registry (``$npm_config_registry`` or registry.npmjs.org),
verifies the hash, and copies the files listed under ``"tundraAssets"`` in package.json into
tundra/bridge/web/static/ (git-ignored, shipped in the wheel). Needs only Python, so a fresh
machine with no Node.js can run the page. Does nothing when the assets match the lock file.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import sys
import tarfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "tundra" / "bridge" / "web" / "static"


def main(argv: list[str]) -> int:
    pkg = json.loads((ROOT / "package.json").read_text())
    lock_text = (ROOT / "package-lock.json").read_text()
    lock = json.loads(lock_text)
    assets: dict[str, str] = pkg["tundraAssets"]
    stamp = STATIC / ".lock-sha256"
    digest = hashlib.sha256(lock_text.encode() + json.dumps(assets, sort_keys=True).encode()).hexdigest()
    current = stamp.exists() and stamp.read_text() == digest and all((STATIC / d).exists() for d in assets.values())
    if "--check" in argv:  # exit 0 when up to date (used before `npm ci`)
        return 0 if current else 1
    if "--stamp" in argv:  # record that `npm run build` produced this lock's assets
        stamp.write_text(digest)
        return 0
    if current:
        print("web assets are up to date")
        return 0
    registry = os.environ.get("npm_config_registry", "https://registry.npmjs.org/").rstrip("/")
    wanted: dict[str, dict[str, str]] = {}
    for src, dst in assets.items():
        name = "/".join(src.split("/")[:2]) if src.startswith("@") else src.split("/")[0]
        wanted.setdefault(name, {})[src[len(name) + 1 :]] = dst
    STATIC.mkdir(parents=True, exist_ok=True)
    for name, files in wanted.items():
        meta = lock["packages"][f"node_modules/{name}"]
        version, integrity = meta["version"], meta["integrity"]
        url = meta.get("resolved") or f"{registry}/{name}/-/{name.split('/')[-1]}-{version}.tgz"
        print(f"fetching {name}@{version}")
        with urllib.request.urlopen(url, timeout=60) as resp:
            data = resp.read()
        algo, _, expected = integrity.partition("-")
        actual = base64.b64encode(hashlib.new(algo, data).digest()).decode()
        if actual != expected:
            print(f"error: {name}@{version}: integrity mismatch ({algo})", file=sys.stderr)
            return 1
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for inner, dst in files.items():
                member = tar.extractfile(f"package/{inner}")
                if member is None:
                    print(f"error: {name}@{version} has no {inner}", file=sys.stderr)
                    return 1
                (STATIC / dst).write_bytes(member.read())
                print(f"  {name}/{inner} -> {STATIC.relative_to(ROOT)}/{dst}")
    stamp.write_text(digest)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
