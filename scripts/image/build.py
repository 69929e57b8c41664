"""Build the aifactory-server image: `make image` and the container tests run exactly this code path.

podman (preferred: daemonless, needs no registry): the base is Debian bookworm straight from Debian's own
mirror (`debootstrap --variant=minbase`, the mirror apt uses; Docker Hub need not be reachable), slimmed
like `python:*-slim`, cached as a tarball under the ignored `.cache/image/` and imported once, then
`podman build --from <base>` swaps the Dockerfile's `FROM` without editing it. The host's CA bundle is
bind-mounted over the base's own bundle during the build's RUN steps only (pip may have to cross a
TLS-intercepting proxy the host trusts); it never lands in a layer.
docker: `docker build` with the Dockerfile's own pinned `FROM` (needs a daemon and Docker Hub).

Every image gets two tags: `<repository>:<appVersion>` (what the chart renders by default) and
`<repository>:<appVersion>-src.<digest>`, content-addressed by the build context, so concurrent builds of
different checkouts never hand each other's image to a test.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "image"
CONTAINERS_CONF = Path(__file__).resolve().parent / "containers.conf"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

SUITE = "bookworm"
MIRROR = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")
# python-is-python3: the chart's `helm test` pod runs `python -c`; passwd: the Dockerfile's useradd.
BASE_PACKAGES = ("python3", "python3-pip", "python-is-python3", "ca-certificates", "passwd")
# What `python:*-slim` and Debian's own images do: no docs, man pages or locales, now or on later
# `apt-get install`s, no apt caches, and pip may install system-wide (no EXTERNALLY-MANAGED marker).
SLIM_SCRIPT = r"""
set -eu
cat > etc/dpkg/dpkg.cfg.d/slim <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
EOF
cat > etc/apt/apt.conf.d/slim <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
Acquire::Languages "none";
EOF
find usr/share/doc -mindepth 2 ! -name copyright ! -type d -delete
find usr/share/doc -mindepth 1 -type d -empty -delete
rm -rf usr/share/man/* usr/share/info/* usr/share/lintian/* var/cache/apt/* var/lib/apt/lists/* \
  var/log/* var/cache/debconf/*-old var/lib/dpkg/*-old
find usr/share/locale -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
rm -f usr/lib/python3*/EXTERNALLY-MANAGED
"""
BASE_KEY = hashlib.sha256(repr((SUITE, MIRROR, BASE_PACKAGES, SLIM_SCRIPT)).encode()).hexdigest()[:12]
BASE_IMAGE = f"localhost/aifactory-base:{SUITE}-{BASE_KEY}"
BASE_TARBALL = CACHE / f"base-{SUITE}-{BASE_KEY}.tar"


def say(message: str) -> None:
    print(f"==> image: {message}", flush=True)


def sudo() -> list[str]:
    """debootstrap and root podman need root; elsewhere go through sudo."""
    return [] if os.geteuid() == 0 else ["sudo", "--preserve-env=CONTAINERS_CONF"]


def engine_env() -> dict[str, str]:
    """The environment every podman call of this project uses: the private containers.conf."""
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def engine_cmd(engine: str) -> list[str]:
    """Root podman (the facts in containers.conf are for root); docker talks to its daemon as the user."""
    return [*sudo(), engine] if engine == "podman" else [engine]


def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=True, text=True, env=engine_env(), **kw)  # type: ignore[call-overload]


def chart_image() -> tuple[str, str]:
    """(repository, appVersion): the image reference the chart renders by default (one home: the chart)."""
    chart = yaml.safe_load((ROOT / "chart" / "Chart.yaml").read_text())
    values = yaml.safe_load((ROOT / "chart" / "values.yaml").read_text())
    return values["image"]["repository"], str(chart["appVersion"])


def context_files() -> list[Path]:
    """The files `.dockerignore` lets into the build context (its `!` lines), plus the Dockerfile."""
    allowed = [
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    files = [ROOT / "Dockerfile"]
    for entry in allowed:
        path = ROOT / entry
        candidates = sorted(path.rglob("*")) if path.is_dir() else [path]
        files += [
            p for p in candidates if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
        ]
    return files


def context_digest() -> str:
    digest = hashlib.sha256()
    for path in context_files():
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def image_tags() -> tuple[str, str]:
    """(release tag, content-addressed tag) of the image built from this checkout."""
    repository, version = chart_image()
    return f"{repository}:{version}", f"{repository}:{version}-src.{context_digest()}"


def image_exists(engine: str, ref: str) -> bool:
    cmd = [*engine_cmd(engine), "image", "inspect", ref]
    return subprocess.run(cmd, capture_output=True, env=engine_env()).returncode == 0


def debootstrap_base() -> None:
    """Debian from Debian's mirror into a slim rootfs tarball under .cache/image/ (once per recipe)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=CACHE, prefix="rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        say(f"debootstrap --variant=minbase {SUITE} from {MIRROR} (once; cached in {BASE_TARBALL.name})")
        run(
            [
                *sudo(),
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                SUITE,
                str(rootfs),
                MIRROR,
            ],
            stdout=subprocess.DEVNULL,
        )
        run([*sudo(), "sh", "-c", SLIM_SCRIPT], cwd=rootfs)
        partial = BASE_TARBALL.with_suffix(".partial")
        run([*sudo(), "tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(partial), "."])
        partial.rename(BASE_TARBALL)
        run([*sudo(), "rm", "-rf", str(rootfs)])
    say(f"base rootfs ready in {time.monotonic() - started:.0f}s")


def ensure_base(engine: str) -> str:
    """The podman base image, imported from the cached tarball (debootstrapped only when missing)."""
    if image_exists(engine, BASE_IMAGE):
        say(f"base {BASE_IMAGE} cached")
        return BASE_IMAGE
    if not BASE_TARBALL.is_file():
        debootstrap_base()
    say(f"importing {BASE_TARBALL.name} as {BASE_IMAGE}")
    run(
        [
            *engine_cmd(engine),
            "import",
            "--change",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--change",
            "ENV LANG=C.UTF-8",
            "--change",
            'CMD ["python3"]',
            str(BASE_TARBALL),
            BASE_IMAGE,
        ],
        stdout=subprocess.DEVNULL,
    )
    return BASE_IMAGE


def build(engine: str, quiet: bool = False) -> str:
    """Build (layer cache makes an unchanged rebuild take seconds); returns the content-addressed tag."""
    release_tag, source_tag = image_tags()
    _, version = chart_image()
    cmd = [*engine_cmd(engine), "build", "--network=host", "--build-arg", f"VERSION={version}"]
    cmd += ["-t", release_tag, "-t", source_tag, "-f", str(ROOT / "Dockerfile")]
    if engine == "podman":
        cmd += ["--from", ensure_base(engine)]
        if HOST_CA_BUNDLE.is_file():  # RUN steps see the host's trust; the image keeps the base's own
            cmd += ["-v", f"{HOST_CA_BUNDLE}:/etc/ssl/certs/ca-certificates.crt:ro"]
    started = time.monotonic()
    say(f"{engine} build -t {release_tag} -t {source_tag}")
    run([*cmd, str(ROOT)], stdout=subprocess.DEVNULL if quiet else None)
    say(f"built {source_tag} in {time.monotonic() - started:.0f}s")
    return source_tag


def pick_engine(requested: str) -> str:
    if requested != "auto":
        return requested
    if shutil.which("podman"):
        return "podman"
    if shutil.which("docker"):
        return "docker"
    raise SystemExit("image: neither podman nor docker found; run `make image` (it installs podman)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/image/build.py", description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=("auto", "podman", "docker"), default="auto")
    parser.add_argument("-q", "--quiet", action="store_true", help="hide the engine's step output")
    args = parser.parse_args(argv)
    build(pick_engine(args.engine), quiet=args.quiet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
