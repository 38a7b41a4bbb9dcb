"""The web page's files: our sources in ``web/`` and the xterm.js build in ``web/static/``.

Only files that exist at start-up are served, by exact name (no path traversal possible).
``web/static/`` is produced by ``make web`` (or ``npm ci && npm run build``) and shipped in
the wheel; when it is missing the bridge logs how to build it.
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from pathlib import Path

__all__ = ["WebAssets", "Asset", "REQUIRED_VENDOR_FILES", "WEB_DIR"]

WEB_DIR = Path(__file__).with_name("web")
REQUIRED_VENDOR_FILES = ("xterm.mjs", "xterm.css", "addon-fit.mjs")

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".map": "application/json",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str


class WebAssets:
    """Loaded once at start-up (blocking reads: call from a worker thread)."""

    def __init__(self, root: Path = WEB_DIR) -> None:
        self.root = root
        self.files: dict[str, Asset] = {}
        for path in sorted(root.glob("*")):
            if path.is_file() and path.suffix in (".html", ".js", ".css", ".svg"):
                self.files[f"/assets/{path.name}"] = self._load(path)
        static = root / "static"
        if static.is_dir():
            for path in sorted(static.glob("*")):
                if path.is_file() and not path.name.endswith(".map") and not path.name.startswith("."):
                    self.files[f"/vendor/{path.name}"] = self._load(path)
        self.built = all(f"/vendor/{n}" in self.files for n in REQUIRED_VENDOR_FILES)
        self.index = self.files.get("/assets/index.html")

    @staticmethod
    def _load(path: Path) -> Asset:
        ctype = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return Asset(path.read_bytes(), ctype)

    def get(self, path: str) -> Asset | None:
        return self.files.get(path)
