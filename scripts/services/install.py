"""Installation of the Debian packages, FerretDB, the npm packages and the Python project."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

from scripts.services.process import BIN_DIR, REPO_ROOT, STATE_ROOT, ServiceError, run_command
from scripts.services.servers import FERRETDB_BIN, POSTGRESQL_BIN

logger = logging.getLogger(__name__)

FERRETDB_MODULE = "github.com/FerretDB/FerretDB"
FERRETDB_VERSION = "v1.24.2"
GO_FALLBACK = Path("/usr/local/go/bin/go")
#: npm project of the browser packages the API serves (GraphiQL), and where it is installed.
WEB_PROJECT = REPO_ROOT / "web"
WEB_INSTALL_DIR = STATE_ROOT / "web"

#: Debian binary that proves a package is installed, and the package that provides it.
APT_PACKAGES: dict[str, str] = {
    "/usr/bin/redis-server": "redis-server",
    "/usr/sbin/dovecot": "dovecot-imapd",
    str(POSTGRESQL_BIN / "initdb"): "postgresql",
    # The browser the browser tests drive through Playwright.
    "/usr/bin/chromium": "chromium",
}


def install(python_packages: bool = True) -> None:
    """Install the Debian packages, FerretDB and the npm packages when missing, then the
    Python project.

    Every step is skipped when its result already exists, so a second run takes seconds.
    """
    install_debian_packages()
    build_ferretdb()
    install_web_packages()
    if python_packages:
        install_python_packages()


def install_debian_packages() -> None:
    missing = sorted(
        {package for binary, package in APT_PACKAGES.items() if not Path(binary).exists()}
    )
    if not missing:
        logger.info("Debian packages present: %s", ", ".join(sorted(set(APT_PACKAGES.values()))))
        return
    if os.geteuid() != 0:
        raise ServiceError(
            f"missing Debian packages {missing}; as root run: apt-get install {' '.join(missing)}"
        )

    # A policy-rc.d that exits 101 stops the package scripts from starting system services.
    policy = Path("/usr/sbin/policy-rc.d")
    added_policy = not policy.exists()
    if added_policy:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        logger.info("apt-get update")
        run_command(["apt-get", "update"], "apt-get update", env=env)
        logger.info("apt-get install -y %s", " ".join(missing))
        run_command(
            ["apt-get", "install", "-y", "--no-install-recommends", *missing],
            "apt-get install",
            env=env,
        )
    finally:
        if added_policy:
            policy.unlink()


def find_go() -> str:
    go = shutil.which("go") or (str(GO_FALLBACK) if GO_FALLBACK.exists() else None)
    if go is None:
        raise ServiceError(
            f"ferretdb: the Go toolchain is missing (looked in PATH and {GO_FALLBACK})"
        )
    return go


def build_ferretdb() -> None:
    """Build FerretDB into ``.state/bin/ferretdb`` from the Go module source.

    A plain ``go install …/cmd/ferretdb@v1.24.2`` produces a binary that panics at start,
    because FerretDB's own build task generates ``build/version/version.txt`` first. So this
    copies the downloaded module, writes that file and runs ``go build`` on the copy.
    """
    if FERRETDB_BIN.exists():
        logger.info("ferretdb present: %s", FERRETDB_BIN)
        return
    go = find_go()
    module = f"{FERRETDB_MODULE}@{FERRETDB_VERSION}"
    logger.info("downloading Go module %s", module)
    info = json.loads(
        run_command(
            [go, "mod", "download", "-json", module], "go mod download", cwd=STATE_ROOT.parent
        )
    )
    source = STATE_ROOT / "build" / f"ferretdb-{FERRETDB_VERSION}"
    shutil.rmtree(source, ignore_errors=True)
    shutil.copytree(info["Dir"], source)
    for root, dirs, files in os.walk(source):
        for name in dirs + files:
            path = os.path.join(root, name)
            os.chmod(path, os.stat(path).st_mode | 0o200)
    (source / "build" / "version" / "version.txt").write_text(f"{FERRETDB_VERSION}\n")

    logger.info(
        "building ferretdb %s into %s (a few minutes the first time)",
        FERRETDB_VERSION,
        FERRETDB_BIN,
    )
    BIN_DIR.mkdir(parents=True, exist_ok=True)
    partial = FERRETDB_BIN.with_suffix(".partial")
    run_command(
        [go, "build", "-buildvcs=false", "-trimpath", "-o", str(partial), "./cmd/ferretdb"],
        "go build ferretdb",
        cwd=source,
    )
    version = run_command([str(partial), "--version"], "ferretdb --version")
    partial.replace(FERRETDB_BIN)
    shutil.rmtree(source, ignore_errors=True)
    logger.info("built %s: %s", FERRETDB_BIN, version.splitlines()[0] if version else "")


def install_web_packages() -> None:
    """``npm ci`` of ``web/package-lock.json`` into ``.state/web/node_modules``.

    Skipped while the stamp written after the last successful install equals the committed
    lock file. Install scripts of the packages do not run.
    """
    lock = WEB_PROJECT / "package-lock.json"
    stamp = WEB_INSTALL_DIR / "installed-package-lock.json"
    if stamp.exists() and stamp.read_bytes() == lock.read_bytes():
        logger.info("npm packages present: %s", WEB_INSTALL_DIR / "node_modules")
        return
    npm = shutil.which("npm")
    if npm is None:
        raise ServiceError(
            "npm is missing; install Node.js 20 or newer with npm (Debian: apt-get install npm)"
        )

    WEB_INSTALL_DIR.mkdir(parents=True, exist_ok=True)
    stamp.unlink(missing_ok=True)
    shutil.copyfile(WEB_PROJECT / "package.json", WEB_INSTALL_DIR / "package.json")
    shutil.copyfile(lock, WEB_INSTALL_DIR / "package-lock.json")
    logger.info("npm ci in %s", WEB_INSTALL_DIR)
    run_command(
        [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--no-update-notifier"],
        "npm ci",
        cwd=WEB_INSTALL_DIR,
        stdin=subprocess.DEVNULL,
    )
    shutil.copyfile(lock, stamp)


def install_python_packages() -> None:
    """``pip install -e '.[dev]'``, skipped while a stamp is newer than pyproject.toml."""
    stamp = STATE_ROOT / "pip-install.stamp"
    pyproject = REPO_ROOT / "pyproject.toml"
    if stamp.exists() and stamp.stat().st_mtime >= pyproject.stat().st_mtime:
        logger.info("Python packages present (pyproject.toml unchanged since %s)", stamp)
        return
    logger.info("pip install -e '.[dev]'")
    run_command(
        [sys.executable, "-m", "pip", "install", "--quiet", "-e", ".[dev]"],
        "pip install",
        cwd=REPO_ROOT,
    )
    STATE_ROOT.mkdir(exist_ok=True)
    stamp.touch()
