"""``lmtk testbed setup``: obtain QEMU ≥ 9 and a kernel from Debian packages, build the guest.

Nothing here changes the system's apt configuration: packages are fetched with
``apt-get download`` against a *private* sources list and package index under the cache
directory (``-o Dir::Etc::SourceList=… -o Dir::State::Lists=…``) and unpacked there with
``dpkg -x``.  QEMU comes from ``bookworm-backports`` (10.0; Debian 12's own 7.2 loses dirty
pages under TCG — fixed upstream by commit 03bfc2188f, QEMU 9.0), the kernel from the
stable suite.  Its shared libraries (plain bookworm packages) are unpacked beside it and
found through ``LD_LIBRARY_PATH``.

The guest is built from ``guest/dirtier.c`` (a static ``/init``) and packed into a
``newc`` cpio initramfs by :func:`write_cpio` (no ``cpio`` binary needed).

Idempotent: every step checks whether its product exists and is current.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

GUEST_SRC = Path(__file__).resolve().parent / "guest" / "dirtier.c"
MIRROR = os.environ.get("LMT_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SUITE = "bookworm"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"

#: (package, suite) to unpack.  QEMU from backports; its libraries from the stable suite.
QEMU_PACKAGES = [
    ("qemu-system-x86", f"{SUITE}-backports"),
    ("qemu-system-common", f"{SUITE}-backports"),
    ("qemu-system-data", f"{SUITE}-backports"),
    ("seabios", f"{SUITE}-backports"),
]
QEMU_LIBS = [
    "libcapstone4",
    "libpmem1",
    "libfdt1",
    "librdmacm1",
    "libibverbs1",
    "libslirp0",
    "libvdeplug2",
    "libfuse3-3",
    "libaio1",
    "liburing2",
    "libndctl6",
    "libdaxctl1",
    "libnl-3-200",
    "libnl-route-3-200",
]
KERNEL_META = "linux-image-amd64"
MIN_QEMU = (9, 0)


def cache_dir() -> Path:
    """``$LMT_TESTBED_DIR`` or ``~/.cache/lmtoolkit/testbed``."""
    env = os.environ.get("LMT_TESTBED_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lmtoolkit" / "testbed"


class SetupError(RuntimeError):
    """Something the testbed needs is missing; the message says what and how to get it."""


@dataclass
class Paths:
    root: Path

    @property
    def sysroot(self) -> Path:
        return self.root / "root"

    @property
    def qemu(self) -> Path:
        return self.sysroot / "usr/bin/qemu-system-x86_64"

    @property
    def firmware_dirs(self) -> list[Path]:
        return [self.sysroot / "usr/share/qemu", self.sysroot / "usr/share/seabios"]

    @property
    def lib_path(self) -> str:
        return ":".join(str(self.sysroot / d) for d in ("usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu"))

    @property
    def kernel(self) -> Path:
        ks = sorted((self.sysroot / "boot").glob("vmlinuz-*"))
        if not ks:
            raise SetupError(f"no kernel under {self.sysroot / 'boot'}; run `lmtk testbed setup`")
        return ks[-1]

    @property
    def initramfs(self) -> Path:
        return self.root / "initramfs.cpio"

    @property
    def dirtier(self) -> Path:
        return self.root / "dirtier"

    def env(self) -> dict:
        e = dict(os.environ)
        e["LD_LIBRARY_PATH"] = self.lib_path + (
            ":" + e["LD_LIBRARY_PATH"] if e.get("LD_LIBRARY_PATH") else ""
        )
        return e

    def ready(self) -> bool:
        try:
            return self.qemu.exists() and self.kernel.exists() and self.initramfs.exists()
        except SetupError:
            return False


def paths(root: Path | None = None) -> Paths:
    return Paths(Path(root) if root else cache_dir())


# -- apt (private index) ---------------------------------------------------------------------
def _apt_opts(root: Path) -> list[str]:
    apt = root / "apt"
    return [
        "-o",
        f"Dir::Etc::SourceList={apt / 'sources.list'}",
        "-o",
        "Dir::Etc::SourceParts=/dev/null",
        "-o",
        f"Dir::State::Lists={apt / 'lists'}",
        "-o",
        f"Dir::Cache={apt / 'cache'}",
        "-o",
        "Debug::NoLocking=1",
        "-o",
        "APT::Sandbox::User=root"
        if os.geteuid() == 0
        else "APT::Sandbox::User=" + os.environ.get("USER", "nobody"),
    ]


def _run(cmd, log, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise SetupError(
            f"command failed ({r.returncode}): {' '.join(map(str, cmd))}\n{r.stderr.strip()[-2000:]}"
        )
    return r


def apt_update(root: Path, log=print) -> None:
    if not shutil.which("apt-get"):
        raise SetupError(
            "apt-get not found: the testbed obtains QEMU and the kernel from Debian packages "
            "(a Debian/Ubuntu host is needed, or set LMT_TESTBED_DIR to a prepared cache)"
        )
    apt = root / "apt"
    for d in ("lists/partial", "cache/archives/partial"):
        (apt / d).mkdir(parents=True, exist_ok=True)
    signed = f"[signed-by={KEYRING}] " if Path(KEYRING).exists() else ""
    src = f"deb {signed}{MIRROR} {SUITE}-backports main\ndeb {signed}{MIRROR} {SUITE} main\n"
    (apt / "sources.list").write_text(src)
    log(f"apt: private index of {MIRROR} {SUITE} + {SUITE}-backports under {apt}")
    _run(["apt-get", *_apt_opts(root), "update"], log)


def apt_download(root: Path, specs: list[str], log=print) -> list[Path]:
    debs = root / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    before = set(debs.glob("*.deb"))
    _run(["apt-get", *_apt_opts(root), "download", *specs], log, cwd=debs)
    new = sorted(set(debs.glob("*.deb")) - before)
    return new


def _kernel_package(root: Path) -> str:
    r = _run(["apt-cache", *_apt_opts(root), "depends", f"{KERNEL_META}/{SUITE}"], print)
    for line in r.stdout.splitlines():
        line = line.strip()
        if line.startswith("Depends:") and "linux-image-" in line:
            return line.split()[1]
    raise SetupError(f"could not resolve {KERNEL_META} to a kernel package")


def qemu_version(p: Paths) -> tuple[int, int]:
    r = subprocess.run([str(p.qemu), "--version"], capture_output=True, text=True, env=p.env())
    if r.returncode != 0:
        raise SetupError(f"{p.qemu} does not run: {r.stderr.strip()}")
    ver = r.stdout.split("version", 1)[1].split()[0]
    major, minor = (int(x) for x in ver.split(".")[:2])
    return major, minor


# -- guest build -----------------------------------------------------------------------------
def build_dirtier(p: Paths, log=print) -> bool:
    """Compile ``dirtier.c`` statically; returns True if it was (re)built."""
    src_hash = hashlib.sha256(GUEST_SRC.read_bytes()).hexdigest()[:16]
    stamp = p.root / "dirtier.src-sha256"
    if p.dirtier.exists() and stamp.exists() and stamp.read_text() == src_hash:
        return False
    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if not cc:
        raise SetupError(
            "no C compiler: install gcc and the static C library (apt-get install gcc libc6-dev)"
        )
    p.root.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        [cc, "-static", "-O2", "-Wall", "-o", str(p.dirtier), str(GUEST_SRC)], capture_output=True, text=True
    )
    if r.returncode != 0:
        raise SetupError(
            f"building the guest program failed (needs gcc and libc6-dev for -static):\n"
            f"{r.stderr.strip()[-2000:]}"
        )
    stamp.write_text(src_hash)
    log(f"built {p.dirtier} (static) from {GUEST_SRC.name}")
    return True


def write_cpio(path: Path, entries: list[tuple[str, int, bytes, tuple[int, int]]]) -> None:
    """Write a ``newc`` cpio archive: entries are (name, mode, data, (rdev major, minor))."""
    out = bytearray()

    def pad4():
        out.extend(b"\0" * (-len(out) % 4))

    for ino, (name, mode, data, (rmaj, rmin)) in enumerate(entries + [("TRAILER!!!", 0, b"", (0, 0))], 1):
        nm = name.encode() + b"\0"
        fields = [
            ino if name != "TRAILER!!!" else 0,
            mode,
            0,
            0,
            1,
            0,
            len(data),
            0,
            0,
            rmaj,
            rmin,
            len(nm),
            0,
        ]
        out.extend(b"070701" + b"".join(b"%08X" % f for f in fields))
        out.extend(nm)
        pad4()
        out.extend(data)
        pad4()
    path.write_bytes(bytes(out))


def build_initramfs(p: Paths, log=print, force: bool = False) -> bool:
    if p.initramfs.exists() and not force and p.initramfs.stat().st_mtime >= p.dirtier.stat().st_mtime:
        return False
    init = p.dirtier.read_bytes()
    entries = [
        ("dev", stat.S_IFDIR | 0o755, b"", (0, 0)),
        ("dev/console", stat.S_IFCHR | 0o600, b"", (5, 1)),
        ("proc", stat.S_IFDIR | 0o755, b"", (0, 0)),
        ("init", stat.S_IFREG | 0o755, init, (0, 0)),
    ]
    write_cpio(p.initramfs, entries)
    log(f"wrote {p.initramfs} ({p.initramfs.stat().st_size // 1024} KiB: /init = dirtier)")
    return True


# -- the whole setup -------------------------------------------------------------------------
def setup(root: Path | None = None, log=print, force: bool = False) -> Paths:
    """Install everything the testbed needs under the cache directory (idempotent)."""
    p = paths(root)
    p.root.mkdir(parents=True, exist_ok=True)
    did = []
    need_qemu = force or not p.qemu.exists()
    try:
        _ = p.kernel  # raises SetupError when no kernel is unpacked yet
        need_kernel = force
    except SetupError:
        need_kernel = True
    if need_qemu or need_kernel:
        apt_update(p.root, log)
        specs = []
        if need_qemu:
            specs += [f"{name}/{suite}" for name, suite in QEMU_PACKAGES] + QEMU_LIBS
        if need_kernel:
            specs.append(_kernel_package(p.root))
        log(f"apt-get download {' '.join(specs)}")
        debs = apt_download(p.root, specs, log)
        for deb in debs:
            _run(["dpkg", "-x", str(deb), str(p.sysroot)], log)
        log(f"unpacked {len(debs)} packages into {p.sysroot}")
        for deb in debs:  # keep the cache small: the unpacked tree is what is used
            deb.unlink()
        did.append("packages")
    major, minor = qemu_version(p)
    if (major, minor) < MIN_QEMU:
        raise SetupError(
            f"QEMU {major}.{minor} at {p.qemu} is too old: TCG loses dirty pages before 9.0 "
            f"(commit 03bfc2188f); remove {p.sysroot} and run setup again"
        )
    if build_dirtier(p, log):
        did.append("guest program")
    if build_initramfs(p, log, force=force or "guest program" in did):
        did.append("initramfs")
    log(f"QEMU {major}.{minor}: {p.qemu}")
    log(f"kernel: {p.kernel}")
    log(f"initramfs: {p.initramfs}")
    log("testbed ready" + ("" if did else " (nothing to do)"))
    return p
