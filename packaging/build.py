#!/usr/bin/env python3
"""Build the lab-workstation installer folder (PyInstaller, onedir) from a fresh clone.

    python3 packaging/build.py                       # Linux / macOS
    py -3.11 packaging\\build.py                      # Windows

Steps: make ``build/venv`` (Python 3.11+), install the pinned dependencies from
pyproject.toml plus the pinned build tools (packaging/requirements-build.txt), run
PyInstaller on packaging/yawbcc-desktop.spec, report time and size.  Result:
``dist/yawbcc-desktop/`` (and ``dist/yawbcc-desktop-<version>-<platform>.tar.gz|.zip`` with
``--archive``).  Then run ``packaging/smoke``.

``--reuse-venv DIR`` skips the dependency install: a small build venv is made whose
site-packages points at DIR's (a developer's existing ``.venv``); only the build tools
are installed into it and DIR is left untouched.  The default, from-scratch path is
what a release should use.

The build takes 10-30 minutes and a few GB in build/; it is not part of the test run.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGING = ROOT / "packaging"
IS_WIN = os.name == "nt"


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if IS_WIN else "bin/python")


def run(cmd: list, **kw) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, **kw)


def site_packages(python: Path) -> Path:
    out = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(out.stdout.strip())


def make_venv(venv: Path, base_python: str) -> Path:
    if not venv_python(venv).exists():
        run([base_python, "-m", "venv", venv])
    return venv_python(venv)


def fresh_environment(venv: Path, base_python: str) -> Path:
    python = make_venv(venv, base_python)
    run([python, "-m", "pip", "install", "--upgrade", "pip"])
    # The app's pinned dependencies (pyproject.toml) and the pinned build tools.  Editable,
    # so the spec analyses this checkout's code; the build does not depend on that install.
    run([python, "-m", "pip", "install", "-e", ROOT, "-r", PACKAGING / "requirements-build.txt"])
    return python


def reused_environment(venv: Path, reuse: Path) -> Path:
    """A build venv that sees the packages of ``reuse`` (not copied, not modified)."""
    reuse_python = venv_python(reuse)
    if not reuse_python.exists():
        raise SystemExit(f"--reuse-venv {reuse}: no {reuse_python}")
    python = make_venv(venv, str(reuse_python))  # same Python version as the packages it borrows
    # site.addsitedir also runs DIR's .pth files (the editable install among them).
    pth = site_packages(python) / "zz_yawbcc_reuse.pth"
    pth.write_text(f"import site; site.addsitedir({str(site_packages(reuse_python))!r})\n", encoding="utf-8")
    run([python, "-m", "pip", "install", "-r", PACKAGING / "requirements-build.txt"])
    return python


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--venv", default=str(ROOT / "build" / "venv"), help="build environment (default: build/venv)")
    parser.add_argument("--reuse-venv", metavar="DIR", help="use the packages of an existing venv instead of installing them")
    parser.add_argument("--python", default=sys.executable, help="Python 3.11+ that makes the venv (default: this one)")
    parser.add_argument("--skip-install", action="store_true", help="use --venv as it is (after a first build)")
    parser.add_argument("--no-strip", action="store_true", help="keep symbol tables in the libraries (Linux)")
    parser.add_argument("--clean", action="store_true", help="empty PyInstaller's cache and work folder first")
    parser.add_argument("--archive", action="store_true", help="also pack dist/yawbcc-desktop into a .tar.gz (.zip on Windows)")
    args = parser.parse_args()

    if sys.version_info < (3, 11) and not args.reuse_venv:
        check = "import sys; print(sys.version_info >= (3, 11))"
        out = subprocess.run([args.python, "-c", check], capture_output=True, text=True)
        if out.stdout.strip() != "True":
            raise SystemExit(f"{args.python} is older than Python 3.11; give --python PATH_TO_PYTHON3.11")
    started = time.monotonic()
    venv = Path(args.venv)
    if args.reuse_venv and args.venv == parser.get_default("venv"):
        venv = ROOT / "build" / "reuse-venv"
    if args.skip_install:
        python = venv_python(venv)
    elif args.reuse_venv:
        python = reused_environment(venv, Path(args.reuse_venv).resolve())
    else:
        python = fresh_environment(venv, args.python)
    installed = time.monotonic()

    env = dict(os.environ)
    if args.no_strip:
        env["YAWBCC_STRIP"] = "0"
    dist = ROOT / "dist"
    run(
        [
            python,
            "-m",
            "PyInstaller",
            PACKAGING / "yawbcc-desktop.spec",
            "--noconfirm",
            "--distpath",
            dist,
            "--workpath",
            ROOT / "build" / "pyinstaller",
        ]
        + (["--clean"] if args.clean else []),
        cwd=ROOT,
        env=env,
    )
    built = time.monotonic()
    app = dist / "yawbcc-desktop"
    size = dir_size(app)
    print(f"\nbuilt {app}")
    print(f"  size on disk: {size / 2**20:.0f} MiB ({size / 1e9:.2f} GB)")
    print(f"  environment: {(installed - started) / 60:.1f} min, PyInstaller: {(built - installed) / 60:.1f} min")
    if args.archive:
        version = subprocess.run(
            [str(python), "-c", "import yawbcc_desktop; print(yawbcc_desktop.__version__)"],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        ).stdout.strip()
        plat = f"{sys.platform}_{platform.machine().lower()}"  # linux_x86_64, win32_amd64, darwin_arm64
        base = dist / f"yawbcc-desktop-{version}-{plat}"
        archive = shutil.make_archive(str(base), "zip" if IS_WIN else "gztar", dist, "yawbcc-desktop")
        print(f"  archive: {archive} ({Path(archive).stat().st_size / 2**20:.0f} MiB)")
    print("next: packaging/smoke")
    return 0


if __name__ == "__main__":
    sys.exit(main())
