"""Vendor the portal's front-end libraries (xterm.js and its fit addon) from the npm registry.

Why a script and committed files: the image and the portal must not depend on a bundler or a CDN at run
time, and a reviewer must be able to see exactly which upstream bytes we ship. Each package is pinned by
version AND by the sha256 of its registry tarball; a mismatch stops the script before anything is written.
`--check` verifies the committed files against `aifactory/static/vendor/MANIFEST.json` without a network
(the test suite runs it).

    python scripts/fetch_vendor.py           # npm pack, verify, copy into aifactory/static/vendor/
    python scripts/fetch_vendor.py --check   # committed files match the manifest's sha256s
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENDOR = ROOT / "aifactory" / "static" / "vendor"
MANIFEST = VENDOR / "MANIFEST.json"

# package spec -> (sha256 of the registry tarball, {file inside the tarball: name under vendor/})
PACKAGES: dict[str, tuple[str, dict[str, str]]] = {
    "@xterm/xterm@6.0.0": (
        "908e66e04af6c8dc6b00dd3b54de088e2e81e5ed866284fd6c2fb3c2d1c7a3f6",
        {
            "package/lib/xterm.js": "xterm.js",
            "package/css/xterm.css": "xterm.css",
            "package/LICENSE": "LICENSE.xterm",
        },
    ),
    "@xterm/addon-fit@0.11.0": (
        "26003b4517a132b64e4ff228fd88a5fda3fff5e606c76093f6dcff772e9ecec0",
        {
            "package/lib/addon-fit.js": "addon-fit.js",
            "package/LICENSE": "LICENSE.addon-fit",
        },
    ),
}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch() -> dict[str, object]:
    files: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for spec, (want, members) in PACKAGES.items():
            out = subprocess.run(
                ["npm", "pack", "--silent", spec], cwd=tmp, check=True, capture_output=True, text=True
            ).stdout.split()[-1]
            tgz = Path(tmp) / out
            got = sha256(tgz.read_bytes())
            if got != want:
                raise SystemExit(f"fetch_vendor: {spec} tarball sha256 is {got}, pinned {want}; refusing")
            with tarfile.open(tgz) as tar:
                for member, name in members.items():
                    extracted = tar.extractfile(member)
                    if extracted is None:
                        raise SystemExit(f"fetch_vendor: {spec} has no {member}")
                    data = extracted.read()
                    (VENDOR / name).write_bytes(data)
                    files[name] = sha256(data)
    return {"packages": {spec: pin for spec, (pin, _m) in PACKAGES.items()}, "files": files}


def check() -> list[str]:
    """Problems with the committed vendor files (empty when they match the manifest and the pins)."""
    manifest = json.loads(MANIFEST.read_text())
    problems = []
    pins = {spec: pin for spec, (pin, _m) in PACKAGES.items()}
    if manifest["packages"] != pins:
        problems.append("MANIFEST.json pins differ from scripts/fetch_vendor.py: re-run the script")
    expected = {name for _pin, members in PACKAGES.values() for name in members.values()}
    if set(manifest["files"]) != expected:
        problems.append(f"MANIFEST.json lists {sorted(manifest['files'])}, expected {sorted(expected)}")
    for name, want in manifest["files"].items():
        path = VENDOR / name
        if not path.is_file():
            problems.append(f"{path.relative_to(ROOT)} is missing")
        elif sha256(path.read_bytes()) != want:
            problems.append(f"{path.relative_to(ROOT)} does not match its sha256 in MANIFEST.json")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="verify committed files, no network")
    args = parser.parse_args()
    if args.check:
        problems = check()
        for problem in problems:
            print(f"fetch_vendor: {problem}", file=sys.stderr)
        return 1 if problems else 0
    VENDOR.mkdir(parents=True, exist_ok=True)
    MANIFEST.write_text(json.dumps(fetch(), indent=2, sort_keys=True) + "\n")
    print(f"fetch_vendor: wrote {MANIFEST.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
