#!/usr/bin/env python3
"""make bench: stratafs against the kernel's overlayfs and Debian's fuse-overlayfs.

One run mounts the same three lower layers (a generated, cached, container-image-like
tree) with each target, verifies that every target serves the same tree, then times
each workload interleaved (kernel, fuse-overlayfs, stratafs, then the next repetition
in rotated order: fuse-overlayfs, stratafs, kernel, ...) N times and reports medians and
ratios. Every measurement gets a fresh, empty upper layer and a
fresh mount; cold runs also drop the page/dentry/inode caches right before timing.

Environment (see tests/bench/README.md):
  BENCH_N=3          repetitions (medians are reported)
  BENCH_QUICK=1      one repetition, cold workloads only (~1-2 minutes)
  BENCH_WORKLOADS=a,b only these workloads (names as in the table's "id" column)
  BENCH_TARGETS=kernel,fuse-overlayfs,stratafs
  BENCH_STRATAFS_PT=/path/to/stratafs   add a target "stratafs-pt" (a passthrough build)
  BENCH_PT_OPTS=passthrough=all         its extra mount options
  BENCH_PROFILE=1    instead of timing: per FUSE target and workload, count FUSE requests
                     by opcode (server in debug mode), then time one normal run and the
                     server's CPU time (build/bench/profile.{txt,json})
  BENCH_STRACE=1     with BENCH_PROFILE=1: also a run under `strace -c -f -p SERVER`
  STRATAFS, FUSE_OVERLAYFS  the binaries (default build/stratafs, /usr/bin/fuse-overlayfs)
  BUILD              the build dir (default build); output goes to $BUILD/bench/
"""

import collections
import csv
import hashlib
import io
import json
import math
import os
import platform
import random
import re
import resource
import signal
import statistics
import subprocess
import sys
import tarfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BUILD = os.path.abspath(os.environ.get("BUILD", os.path.join(REPO, "build")))
OUT = os.path.join(BUILD, "bench")
DATA = os.path.join(OUT, "data")
RUN = os.path.join(OUT, "run")
TOOL = os.path.join(OUT, "benchtool")

QUICK = os.environ.get("BENCH_QUICK", "0") not in ("", "0")
N = int(os.environ.get("BENCH_N", "1" if QUICK else "3"))
PROFILE = os.environ.get("BENCH_PROFILE", "0") not in ("", "0")
STRACE = os.environ.get("BENCH_STRACE", "0") not in ("", "0")
STRATAFS = os.path.abspath(os.environ.get("STRATAFS", os.path.join(BUILD, "stratafs")))
FUSE_OVERLAYFS = os.environ.get("FUSE_OVERLAYFS", "/usr/bin/fuse-overlayfs")
STRATAFS_PT = os.environ.get("BENCH_STRATAFS_PT", "")
# the passthrough target's options: "all" also passes through reads of lower files
# (the default, passthrough=1, only files in the upper layer; writes are the same)
PT_OPTS = os.environ.get("BENCH_PT_OPTS", "passthrough=all")

# The dataset: bump GEN_VERSION whenever the generator changes what it writes.
GEN_VERSION = 6
SEED = 20250601
BIG_SEQ = "srv/big/blob-1G"  # the 1 GiB file: sequential and random reads, copy-up (bottom)
BIG_SIZE = 1 << 30
RM_TREE = "usr/share/locale"  # the rm -rf target (bottom + middle layer, ~10k entries)
UNTAR_TOP = "usr/share/benchpkg"  # the untar tarball's tree, under an existing lower dir
N_UNTAR = 20000
N_APPEND = 1000
N_META = 5000
N_RANDREAD = 20000
SEQWRITE_MIB = 1024
MANY_LAYERS = (20, 200)  # mount time with this many lower layers


def log(msg):
    print(msg, flush=True)


def die(msg):
    log("bench: error: " + msg)
    sys.exit(1)


# --------------------------------------------------------------------------------------
# dataset
# --------------------------------------------------------------------------------------

SYL = ["ab", "ac", "al", "an", "ar", "ba", "be", "bi", "bo", "ca", "ce", "co", "cu", "da",
       "de", "di", "do", "el", "em", "en", "er", "es", "ex", "fa", "fi", "fo", "ga", "ge",
       "gi", "go", "ha", "he", "hi", "ho", "id", "il", "im", "in", "io", "is", "ja", "ka",
       "ke", "ki", "ko", "la", "le", "li", "lo", "lu", "ma", "me", "mi", "mo", "mu", "na",
       "ne", "ni", "no", "nu", "ob", "od", "ol", "om", "on", "op", "or", "os", "ox", "pa",
       "pe", "pi", "po", "pu", "qu", "ra", "re", "ri", "ro", "ru", "sa", "se", "si", "so",
       "su", "ta", "te", "ti", "to", "tu", "ul", "um", "un", "ur", "us", "va", "ve", "vi",
       "vo", "xa", "xe", "yo", "za", "ze", "zo"]
LANGS = ["af", "am", "ar", "as", "ast", "az", "be", "bg", "bn", "br", "bs", "ca", "cs",
         "cy", "da", "de", "el", "en_GB", "eo", "es", "et", "eu", "fa", "fi", "fr", "ga",
         "gl", "gu", "he", "hi", "hr", "hu", "id", "is", "it", "ja", "ka", "kk", "km", "kn",
         "ko", "lt", "lv", "mk", "ml", "mr", "ms", "nb", "nl", "pa", "pl", "pt", "pt_BR",
         "ro", "ru"]


class Gen:
    """Generates three layers as lists of entries and keeps the merged view that the
    kernel's overlay rules give (whiteouts hide, opaque dirs hide what is below)."""

    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.layers = []  # bottom first: list of entries
        self.merged = {}  # path -> ("f", size) | ("l", target) | ("d", 0)
        self.hardlinked = set()
        self.used_names = set()

    def name(self, lo=2, hi=4):
        for _ in range(1000):
            n = "".join(self.rng.choice(SYL) for _ in range(self.rng.randint(lo, hi)))
            if n not in self.used_names:
                self.used_names.add(n)
                return n
        raise RuntimeError("name space exhausted")

    def size(self, median, sigma=1.2, cap=256 * 1024):
        return int(min(cap, self.rng.lognormvariate(math.log(median), sigma)))

    # entries of the layer being built
    def begin(self):
        self.cur = []
        self.layers.append(self.cur)
        self.cur_paths = {}

    def _dirs(self, path):
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if self.merged.get(d, ("d",))[0] != "d":
                raise RuntimeError("parent %s of %s is not a dir" % (d, path))
            self.merged[d] = ("d", 0)

    def file(self, path, size, mode=0o644):
        if path in self.cur_paths:
            return
        self._dirs(path)
        self.cur.append(("f", path, size, mode))
        self.cur_paths[path] = 1
        self.merged[path] = ("f", size)

    def symlink(self, path, target):
        if path in self.cur_paths or path in self.merged:
            return
        self._dirs(path)
        self.cur.append(("l", path, target))
        self.cur_paths[path] = 1
        self.merged[path] = ("l", target)

    def hardlink(self, path, existing):
        if path in self.cur_paths or path in self.merged:
            return
        self._dirs(path)
        self.cur.append(("h", path, existing))
        self.cur_paths[path] = 1
        self.merged[path] = self.merged[existing]
        self.hardlinked.update((path, existing))

    def _drop_subtree(self, path):
        pre = path + "/"
        for p in [p for p in self.merged if p.startswith(pre)]:
            del self.merged[p]

    def whiteout(self, path):
        if any(p.startswith(path + "/") for p in self.cur_paths):
            raise RuntimeError("whiteout %s over entries of the same layer" % path)
        self._dirs(path)
        self.cur.append(("w", path))
        self.cur_paths[path] = 1
        self._drop_subtree(path)
        del self.merged[path]

    def opaque_dir(self, path):
        self._dirs(path + "/x")
        self.cur.append(("o", path))
        self.cur_paths[path] = 1
        self._drop_subtree(path)

    def visible_files(self, prefix="", exclude=()):
        out = []
        for p, v in self.merged.items():
            if v[0] == "f" and p.startswith(prefix) and p not in self.hardlinked and \
                    not any(p.startswith(e) for e in exclude):
                out.append(p)
        out.sort()
        return out


def build_layers(g):
    r = g.rng
    pkgs = [g.name() for _ in range(420)]

    # ---- bottom layer: a Debian-like base with a few hundred packages ----
    g.begin()
    for i in range(60):
        g.file("etc/%s.conf" % g.name(), g.size(700))
    for p in pkgs[:45]:
        for _ in range(r.randint(1, 6)):
            g.file("etc/%s/%s" % (p, g.name()), g.size(900))
    bins = []
    for _ in range(650):
        b = "usr/bin/" + g.name()
        g.file(b, g.size(20000, cap=512 * 1024), 0o755)
        bins.append(b)
    for _ in range(40):
        g.symlink("usr/bin/" + g.name(), os.path.basename(r.choice(bins)))
    for b in r.sample(bins, 15):
        g.hardlink(b + "-" + g.name(1, 1), b)
    for _ in range(150):
        g.file("usr/sbin/" + g.name(), g.size(20000, cap=512 * 1024), 0o755)
    libdir = "usr/lib/x86_64-linux-gnu"
    for _ in range(350):
        n = g.name()
        real = "lib%s.so.%d.%d.%d" % (n, r.randint(0, 9), r.randint(0, 20), r.randint(0, 9))
        g.file("%s/%s" % (libdir, real), g.size(60000, cap=512 * 1024))
        g.symlink("%s/lib%s.so.%s" % (libdir, n, real.split(".so.")[1][0]), real)
    for _ in range(30):
        d = "%s/%s" % (libdir, g.name())
        for _ in range(r.randint(3, 10)):
            g.file("%s/%s.so" % (d, g.name()), g.size(15000))

    def pytree(top, nfiles_target):
        count = 0
        dirs = [top]
        while count < nfiles_target:
            d = r.choice(dirs)
            if d.count("/") - top.count("/") < 3 and r.random() < 0.3:
                d = "%s/%s" % (d, g.name())
                dirs.append(d)
            g.file(d + "/__init__.py", g.size(300))
            m = g.name()
            g.file("%s/%s.py" % (d, m), g.size(6000))
            g.file("%s/__pycache__/%s.cpython-311.pyc" % (d, m), g.size(7000))
            count += 3

    for _ in range(330):
        pytree("usr/lib/python3/dist-packages/" + g.name(), r.randint(20, 90))
    for _ in range(750):
        top = "usr/lib/node_modules/" + g.name()
        g.file(top + "/package.json", g.size(1500))
        g.file(top + "/README.md", g.size(4000))
        g.file(top + "/LICENSE", g.size(1100, 0.3))
        for sub in ("lib", "dist")[:r.randint(1, 2)]:
            for _ in range(r.randint(2, 10)):
                g.file("%s/%s/%s.js" % (top, sub, g.name()), g.size(5000))
    incdirs = ["usr/include"] + ["usr/include/" + g.name() for _ in range(150)]
    for _ in range(6500):
        g.file("%s/%s.h" % (r.choice(incdirs), g.name()), g.size(5000))
    for p in pkgs:
        d = "usr/share/doc/" + p
        g.file(d + "/copyright", g.size(3000))
        if r.random() < 0.7:
            g.file(d + "/changelog.Debian.gz", g.size(2000))
        if r.random() < 0.2:
            g.file(d + "/README", g.size(2500))
    for _ in range(7000):
        sec = r.choice("11111333558")
        g.file("usr/share/man/man%s/%s.%s.gz" % (sec, g.name(), sec), g.size(2000))
    mo = [g.name() for _ in range(400)]
    for lang in LANGS:
        for m in r.sample(mo, 170):
            g.file("%s/%s/LC_MESSAGES/%s.mo" % (RM_TREE, lang, m), g.size(8000))
    for _ in range(30):
        d = "usr/share/zoneinfo/" + g.name()
        for _ in range(35):
            g.file(d + "/" + g.name(), g.size(1500, 0.5))
    perldirs = ["usr/share/perl5/" + g.name() for _ in range(60)]
    perldirs += ["%s/%s" % (r.choice(perldirs), g.name()) for _ in range(60)]
    for _ in range(3500):
        g.file("%s/%s.pm" % (r.choice(perldirs), g.name()), g.size(7000))
    for p in pkgs:
        g.file("var/lib/dpkg/info/%s.list" % p, g.size(1500))
        g.file("var/lib/dpkg/info/%s.md5sums" % p, g.size(2500))
        if r.random() < 0.3:
            g.file("var/lib/dpkg/info/%s.postinst" % p, g.size(1200), 0o755)
    g.file(BIG_SEQ, BIG_SIZE)
    g.file("srv/big/blob-32M-base", 32 << 20)

    # ---- middle layer: an update layer with opaque dirs, whiteouts and overrides ----
    # (opaque dirs and dir whiteouts first: a whiteout must always hide something below
    # it, as in layers that real tools write; the kernel shows a whiteout that hides
    # nothing, in a directory with no lower layer below it, as a char device)
    g.begin()
    opq = sorted(d for d in perldirs if d in g.merged and d.count("/") == 3)[0]
    g.opaque_dir(opq)
    for _ in range(40):
        g.file("%s/%s.pm" % (opq, g.name()), g.size(7000))
    nodedirs = sorted({"/".join(p.split("/")[:4]) for p in g.merged
                       if p.startswith("usr/lib/node_modules/") and p.count("/") > 3})
    opq2 = r.choice(nodedirs)
    g.opaque_dir(opq2)
    g.file(opq2 + "/package.json", g.size(1500))
    for _ in range(25):
        g.file("%s/lib/%s.js" % (opq2, g.name()), g.size(5000))
    g.whiteout(r.choice([d for d in nodedirs if d != opq2]))
    pydirs = sorted({"/".join(p.split("/")[:5]) for p in g.merged
                     if p.startswith("usr/lib/python3/dist-packages/") and p.count("/") > 4})
    g.whiteout(r.choice(pydirs))
    cand = g.visible_files(exclude=("srv/big/",))
    for p in r.sample(cand, 400):
        g.file(p, g.size(5000), 0o755 if p.startswith("usr/bin/") else 0o644)
    cand = [p for p in g.visible_files(exclude=("srv/big/",)) if p not in g.cur_paths]
    for p in r.sample(cand, 250):
        g.whiteout(p)
    for _ in range(40):
        pytree("usr/lib/python3/dist-packages/" + g.name(), r.randint(30, 80))
    for lang in LANGS[:50]:
        for _ in range(6):
            g.file("%s/%s/LC_MESSAGES/%s.mo" % (RM_TREE, lang, g.name()), g.size(8000))
    for _ in range(200):
        g.file("var/lib/dpkg/info/%s.list" % g.name(), g.size(1500))
    for _ in range(60):
        g.file("usr/bin/" + g.name(), g.size(20000, cap=512 * 1024), 0o755)
    g.file("srv/big/blob-32M-mid", 32 << 20)

    # ---- top layer: the application ----
    g.begin()
    appdirs = ["opt/app"]
    for _ in range(80):
        appdirs.append("%s/%s" % (r.choice(appdirs), g.name()))
    for _ in range(1000):
        g.file("%s/%s.%s" % (r.choice(appdirs), g.name(), r.choice(["js", "py", "json", "css"])),
               g.size(4000))
    cand = g.visible_files(exclude=("srv/big/", "opt/"))
    for p in r.sample(cand, 100):
        g.file(p, g.size(5000))
    cand = [p for p in g.visible_files(exclude=("srv/big/", "opt/")) if p not in g.cur_paths]
    for p in r.sample(cand, 60):
        g.whiteout(p)
    for p in r.sample([p for p in g.merged if p.startswith("etc/") and g.merged[p][0] == "f"], 20):
        g.file(p, g.size(900))
    g.file("srv/big/blob-32M-top", 32 << 20)


def write_layers(g, dest):
    pool = random.Random(SEED + 1).randbytes(1 << 20)
    layer_dirs = []
    for i, entries in enumerate(reversed(g.layers)):  # lowerdir order: topmost first
        layer_dirs.append(os.path.join(dest, "l%d" % (i + 1)))
    for ldir, entries in zip(reversed(layer_dirs), g.layers):
        os.makedirs(ldir)
        made = set()

        def mkparents(path):
            d = os.path.dirname(path)
            if d and d not in made:
                os.makedirs(os.path.join(ldir, d), exist_ok=True)
                made.add(d)

        for e in entries:
            full = os.path.join(ldir, e[1])
            mkparents(e[1])
            if e[0] == "f":
                size, mode = e[2], e[3]
                fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
                off = int(hashlib.md5(e[1].encode()).hexdigest()[:6], 16) % (1 << 19)
                left = size
                while left > 0:
                    chunk = pool[off:off + min(left, (1 << 20) - off)]
                    os.write(fd, chunk)
                    left -= len(chunk)
                    off = 0
                os.close(fd)
                os.chmod(full, mode)
            elif e[0] == "l":
                os.symlink(e[2], full)
            elif e[0] == "h":
                os.link(os.path.join(ldir, e[2]), full)
            elif e[0] == "w":
                os.mknod(full, 0o600 | 0o020000, os.makedev(0, 0))
                os.chmod(full, 0)
            elif e[0] == "o":
                os.makedirs(full, exist_ok=True)
                made.add(e[1])
                os.setxattr(full, "trusted.overlay.opaque", b"y")
    return layer_dirs


def write_untar(path):
    r = random.Random(SEED + 2)
    pool = random.Random(SEED + 3).randbytes(1 << 20)
    dirs = [UNTAR_TOP]
    for _ in range(800):
        dirs.append("%s/%s" % (r.choice(dirs), "".join(r.choice(SYL) for _ in range(3))))
    dirs = sorted(set(dirs))
    names = set()
    while len(names) < N_UNTAR:
        names.add("%s/%s.dat" % (r.choice(dirs), "".join(r.choice(SYL) for _ in range(4))))
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as t:
        for d in dirs:
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, 1700000000
            t.addfile(ti)
        for n in sorted(names):
            size = int(min(64 * 1024, r.lognormvariate(math.log(1500), 1.2)))
            ti = tarfile.TarInfo(n)
            ti.size, ti.mode, ti.mtime = size, 0o644, 1700000000
            off = r.randrange(0, (1 << 20) - size)
            t.addfile(ti, io.BytesIO(pool[off:off + size]))
    return len(dirs) - 1 + N_UNTAR  # entries below UNTAR_TOP


def dataset():
    """Builds (once; cached by GEN_VERSION) the layers, the tarball and the lists."""
    stamp = os.path.join(DATA, "stamp.json")
    want = {"gen_version": GEN_VERSION, "seed": SEED}
    try:
        with open(stamp) as f:
            info = json.load(f)
        if {k: info.get(k) for k in want} == want:
            return info
    except (OSError, ValueError):
        pass
    log("bench: generating the dataset in %s (once)" % DATA)
    t0 = time.time()
    subprocess.run(["rm", "-rf", DATA], check=True)
    os.makedirs(DATA)
    g = Gen(SEED)
    build_layers(g)
    old_umask = os.umask(0o022)
    try:
        layers = write_layers(g, os.path.join(DATA, "layers"))
        untar_entries = write_untar(os.path.join(DATA, "untar.tar"))
    finally:
        os.umask(old_umask)
    r = random.Random(SEED + 4)
    cand = [p for p in g.visible_files(exclude=("srv/big/", "opt/")) if g.merged[p][1] < 1 << 20]
    append = sorted(r.sample(cand, N_APPEND))
    with open(os.path.join(DATA, "append.list"), "w") as f:
        f.write("".join(p + "\n" for p in append))
    with open(os.path.join(DATA, "bigappend.list"), "w") as f:
        f.write(BIG_SEQ + "\n")
    # the mount-time layers: many/1 .. many/N (short relative names: the kernel takes at
    # most one page of mount options), each a directory, a file and a shared directory
    for i in range(1, max(MANY_LAYERS) + 1):
        d = os.path.join(DATA, "many", str(i))
        os.makedirs(os.path.join(d, "etc", "layer%d" % i))
        os.makedirs(os.path.join(d, "shared"), exist_ok=True)
        with open(os.path.join(d, "f%d" % i), "w") as f:
            f.write("layer %d\n" % i)
        with open(os.path.join(d, "shared", "g%d" % i), "w") as f:
            f.write("layer %d\n" % i)
    model = {p: list(v) for p, v in g.merged.items()}
    with open(os.path.join(DATA, "model.json"), "w") as f:
        json.dump(model, f)
    info = dict(want)
    info.update({
        "layers": layers,
        "layer_entries": [len(e) for e in reversed(g.layers)],
        "layer_whiteouts": [sum(1 for x in e if x[0] == "w") for e in reversed(g.layers)],
        "untar_entries": untar_entries,
        "append": append[:3],
        "rm_tree_entries": sum(1 for p in g.merged if p.startswith(RM_TREE + "/")),
        "generate_seconds": round(time.time() - t0, 1),
    })
    with open(stamp, "w") as f:
        json.dump(info, f, indent=1)
    return info


# --------------------------------------------------------------------------------------
# targets: mount, find the server, unmount
# --------------------------------------------------------------------------------------

MOUNTED = []  # mountpoints we mounted and have not unmounted yet


def mountinfo_fstype(mnt):
    """The fs type mounted exactly on mnt (the last, topmost mount), or None."""
    fstype = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            a = line.split()
            if a[4].replace("\\040", " ") == mnt:
                fstype = a[a.index("-") + 1]
    return fstype


def mount_options(mnt):
    opts = None
    with open("/proc/self/mounts") as f:
        for line in f:
            a = line.split()
            if a[1] == mnt:
                opts = a[3]
    return opts


def server_pid(mnt, exe):
    """The pid of the FUSE server serving mnt: its argv holds exe's name and mnt."""
    me = str(os.getpid())
    for d in os.listdir("/proc"):
        if not d.isdigit() or d == me:
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                argv = f.read().split(b"\0")
            with open("/proc/%s/stat" % d) as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
        except OSError:
            continue
        if argv and os.path.basename(argv[0]) == os.path.basename(exe).encode() and \
                mnt.encode() in argv:
            return int(d)
    return None


def set_fd_limit():
    # every server gets the same fd limit: the hard limit (20000 on these machines)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Scratch:
    """The filesystem that holds the upper and work dirs: a fresh ext4 (mkfs'd again
    before every measurement) on a loop device over a sparse file in build/bench/.

    Why not a directory on the root filesystem: there, file creation cost depends on the
    history of the whole disk. ext4 will not reuse an inode deleted in the last minute
    (recently_deleted() in find_inode_bit), and after the previous measurement's upper
    layer -- or another user's test run -- deleted thousands of files, each create scans
    past them: `create+stat+unlink 5000 files` took 0.1 s or 3.5 s on the same kernel
    overlay depending on what had been deleted before. A fresh filesystem per
    measurement gives every target the same, empty, unfragmented upper."""

    def __init__(self):
        self.img = os.path.join(OUT, "scratch.img")
        self.mnt = os.path.join(RUN, "scratch")
        self.dev = None

    def attach(self):
        os.makedirs(self.mnt, exist_ok=True)
        with open(self.img, "w") as f:
            f.truncate(2 << 30)
        p = subprocess.run(["losetup", "--find", "--show", "--direct-io=on", self.img],
                           capture_output=True, text=True)
        if p.returncode != 0:
            die("losetup: %s" % p.stderr.strip())
        self.dev = p.stdout.strip()
        LOOPS.append(self.dev)

    def fresh(self):
        if self.mnt in MOUNTED:
            self.release_mount()
        # a FUSE server that has just exited can hold the filesystem for a moment longer
        # (its last fds are closed after the unmount returned): retry for a while
        for attempt in range(100):
            p = subprocess.run(["mkfs.ext4", "-q", "-F", "-E",
                                "lazy_itable_init=1,lazy_journal_init=1,nodiscard", self.dev],
                               capture_output=True, text=True)
            if p.returncode == 0:
                break
            time.sleep(0.2)
        else:
            die("mkfs.ext4 %s: %s" % (self.dev, p.stderr.strip()))
        if attempt:
            log("bench: note: the scratch device was busy for %.1f s after the last unmount" % (attempt * 0.2))
        subprocess.run(["mount", "-t", "ext4", self.dev, self.mnt], check=True)
        MOUNTED.append(self.mnt)

    def release_mount(self):
        for _ in range(50):
            if subprocess.run(["umount", self.mnt], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        else:
            die("cannot unmount %s" % self.mnt)
        MOUNTED.remove(self.mnt)


SCRATCH = Scratch()
LOOPS = []  # loop devices we attached


class Target:
    def __init__(self, name, exe=None, fstype="overlay", opts=""):
        self.name, self.exe, self.fstype, self.opts = name, exe, fstype, opts
        self.pid = None
        self.proc = None  # foreground (debug) server
        self.mnt = os.path.join(RUN, name, "mnt")
        self.upper = os.path.join(SCRATCH.mnt, name, "upper")
        self.work = os.path.join(SCRATCH.mnt, name, "work")

    def fresh_dirs(self):
        SCRATCH.fresh()
        for p in (self.upper, self.work, self.mnt):
            os.makedirs(p, exist_ok=True)

    def mount(self, layers, debug_log=None, cwd="/"):
        if mountinfo_fstype(self.mnt) is not None:
            die("%s is already a mountpoint" % self.mnt)
        self.fresh_dirs()
        opts = "lowerdir=%s,upperdir=%s,workdir=%s" % (":".join(layers), self.upper, self.work)
        if self.opts:
            opts += "," + self.opts
        if self.exe is None:
            cmd = ["mount", "-t", "overlay", "overlay", "-o", opts, self.mnt]
        else:
            cmd = [self.exe, "-o", opts, self.mnt]
        MOUNTED.append(self.mnt)
        if debug_log is not None:
            self.proc = subprocess.Popen(cmd[:1] + ["-f", "-d"] + cmd[1:], stdin=subprocess.DEVNULL,
                                         stdout=debug_log, stderr=subprocess.STDOUT,
                                         preexec_fn=set_fd_limit, cwd="/")
            for _ in range(200):
                if mountinfo_fstype(self.mnt) == self.fstype or self.proc.poll() is not None:
                    break
                time.sleep(0.05)
            self.pid = self.proc.pid
        else:
            t0 = time.perf_counter()
            p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               preexec_fn=set_fd_limit, cwd=cwd)
            self.mount_seconds = time.perf_counter() - t0
            if p.returncode != 0:
                MOUNTED.remove(self.mnt)
                die("%s: mount failed (%d): %s" % (self.name, p.returncode, p.stderr.strip()))
        got = mountinfo_fstype(self.mnt)
        if got != self.fstype:
            die("%s: %s is mounted as %s, not %s" % (self.name, self.mnt, got, self.fstype))
        if self.exe is not None and debug_log is None:
            self.pid = server_pid(self.mnt, self.exe)
            if self.pid is None:
                die("%s: no server process found for %s" % (self.name, self.mnt))

    def umount(self):
        for attempt in range(50):
            if subprocess.run(["umount", self.mnt], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        else:
            subprocess.run(["umount", "-l", self.mnt])
        if self.mnt in MOUNTED:
            MOUNTED.remove(self.mnt)
        # the next measurement must not share the machine with a server still tearing down
        if self.proc is not None:
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                log("bench: warning: %s server %d still running after umount" % (self.name, self.pid))
            self.proc = None
        elif self.pid is not None:
            for _ in range(300):
                if not os.path.exists("/proc/%d" % self.pid) or proc_state(self.pid) == "Z":
                    break
                time.sleep(0.01)
            else:
                log("bench: warning: %s server %d still running after umount" % (self.name, self.pid))
        self.pid = None

    def rss_kib(self):
        if self.pid is None:
            return None
        out = {}
        try:
            with open("/proc/%d/status" % self.pid) as f:
                for line in f:
                    k, v = line.split(":", 1)
                    if k in ("VmRSS", "VmHWM", "Threads"):
                        out[k] = int(v.split()[0])
            out["fds"] = len(os.listdir("/proc/%d/fd" % self.pid))
        except OSError:
            return None
        return out


def proc_state(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def cleanup():
    for m in list(reversed(MOUNTED)):
        for _ in range(20):
            if subprocess.run(["umount", m], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        else:
            subprocess.run(["umount", "-l", m], capture_output=True)
        MOUNTED.remove(m)
    for d in LOOPS:
        subprocess.run(["losetup", "-d", d], capture_output=True)
    LOOPS.clear()
    try:
        os.unlink(SCRATCH.img)
    except OSError:
        pass


def on_signal(signum, frame):
    raise KeyboardInterrupt


# --------------------------------------------------------------------------------------
# verification: every target serves the same tree
# --------------------------------------------------------------------------------------

def manifest(mnt):
    p = subprocess.run([TOOL, "walk", "list", "-r", mnt], capture_output=True, text=True,
                       errors="surrogateescape")
    if p.returncode != 0:
        return None, p.stderr.strip()
    m = {}
    for line in p.stdout.splitlines():
        path, typ, mode, size, nlink, target = line.split("\t")
        m[path[len(mnt) + 1:]] = (typ, mode, int(size), int(nlink), target)
    return m, None


def compare(ref, got):
    """Differences in path, type, permission bits, size and symlink target (not nlink)."""
    diffs = []
    for p in sorted(set(ref) | set(got)):
        a, b = ref.get(p), got.get(p)
        if a is None or b is None:
            diffs.append("%s: %s" % (p, "missing" if b is None else "extra"))
        elif (a[0], a[1], a[2], a[4]) != (b[0], b[1], b[2], b[4]):
            diffs.append("%s: %s != %s" % (p, a, b))
    return diffs


def plan_shards(ref, mnt, n, skip_big):
    """Splits the tree into n plans of about equal entry counts: chunks of at most 1/48
    of the tree are walked whole ("R dir"); directories above them are listed alone
    ("D dir"). Each entry is visited by exactly one shard."""
    children = collections.defaultdict(list)
    for p, v in ref.items():
        children[os.path.dirname(p)].append((p, v[0]))
    sub = {}

    def size(d):
        s = 0
        for c, t in children[d]:
            s += 1 + (size(c) if t == "d" else 0)
        sub[d] = s
        return s

    total = size("")
    limit = max(1, total // 48)
    items = []

    def visit(d):
        if sub[d] <= limit:
            items.append((sub[d], "R", d))
            return
        items.append((len(children[d]), "D", d))
        for c, t in children[d]:
            if t == "d" and not (skip_big and os.path.basename(c) == "big"):
                visit(c)

    visit("")
    shards = [[0, []] for _ in range(n)]
    for w, kind, d in sorted(items, key=lambda x: (-x[0], x[2])):
        s = min(shards, key=lambda x: x[0])
        s[0] += w
        s[1].append("%s %s" % (kind, os.path.join(mnt, d) if d else mnt))
    return [s[1] for s in shards]


# --------------------------------------------------------------------------------------
# workloads
# --------------------------------------------------------------------------------------

class Ctx:
    """What a workload needs to know about the reference tree."""
    pass


def parse_counts(text):
    out = {}
    for k, v in re.findall(r"(\w+)=(\d+)", text):
        out[k] = int(v)
    return out


def run_cmds(steps):
    """Runs steps (each a list of commands started together) one after the other and
    returns the summed counters of the tools' stderr; raises on a failed command."""
    counts = collections.Counter()
    for step in steps:
        procs = [subprocess.Popen(c, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True, cwd=OUT) for c in step]
        for c, p in zip(step, procs):
            _, err = p.communicate()
            if p.returncode != 0:
                raise RuntimeError("%s exited %d: %s" % (" ".join(c), p.returncode, err.strip()[-600:]))
            counts.update(parse_counts(err))
    return counts


def expect(counts, **want):
    for k, v in want.items():
        if counts.get(k) != v:
            raise RuntimeError("expected %s=%s, got %s (%s)" % (k, v, counts.get(k), dict(counts)))


def workloads(ctx):
    T = TOOL
    W = []

    def add(wid, desc, cold, steps, check=None, warm_steps=None, mutating=False, extra=False,
            prime=None, mount_layers=None):
        # extra: only run when named in BENCH_WORKLOADS (kept from earlier runs, not asked
        # for by the issue); prime: what a cold run reads from the lower layers first;
        # mount_layers: time the mount itself, with that many lower layers
        W.append(dict(id=wid, desc=desc, cold=cold, steps=steps, check=check,
                      warm_steps=warm_steps, mutating=mutating, extra=extra, prime=prime,
                      mount_layers=mount_layers))

    def walk(mode, skip=False):
        x = ["-x", "big"] if skip else []
        return lambda t: [[[T, "walk", mode] + x + ["-r", t.mnt]]]

    def par_walk(mode, skip=False, n=2):
        x = ["-x", "big"] if skip else []
        return lambda t: [[[T, "walk", mode] + x + [t.plans[(mode, n, i)]] for i in range(n)]]

    def chk_entries(c, t):
        expect(c, entries=ctx.entries, errors=0)

    def chk_read(c, t):
        expect(c, files=ctx.small_files, bytes=ctx.small_bytes, errors=0)

    add("stat_cold", "stat walk, cold (%d entries)" % ctx.entries, True, walk("stat"), chk_entries)
    add("stat_warm", "stat walk, warm", False, walk("stat"), chk_entries, warm_steps=walk("stat"))
    lslr = lambda t: [[["ls", "-lR", t.mnt]]]
    add("lslr_cold", "ls -lR, cold", True, lslr)
    add("lslr_warm", "ls -lR, warm", False, lslr, warm_steps=lslr)
    add("readdir_cold", "readdir walk (no stat), cold", True, walk("readdir"), chk_entries,
        extra=True)
    add("readdir_warm", "readdir walk (no stat), warm", False, walk("readdir"), chk_entries,
        warm_steps=walk("readdir"), extra=True)
    add("read_cold", "read all small files, cold (%d, %d MiB)"
        % (ctx.small_files, ctx.small_bytes >> 20), True, walk("read", True), chk_read)
    add("read_warm", "read all small files, warm", False, walk("read", True), chk_read,
        warm_steps=walk("read", True))
    big = lambda t: [[[T, "seqread", os.path.join(t.mnt, BIG_SEQ)]]]
    chk_big = lambda c, t: expect(c, bytes=BIG_SIZE, errors=0)
    prime_big = lambda layers: [[[TOOL, "seqread", os.path.join(layers[-1], BIG_SEQ)]]]
    add("seqread_cold", "sequential read 1 GiB, cold", True, big, chk_big, prime=prime_big)
    add("seqread_warm", "sequential read 1 GiB, warm", False, big, chk_big, warm_steps=big)
    add("randread_cold", "%d random 4 KiB reads of the 1 GiB file, cold" % N_RANDREAD, True,
        lambda t: [[[T, "randread", os.path.join(t.mnt, BIG_SEQ), str(N_RANDREAD), "7"]]],
        lambda c, t: expect(c, reads=N_RANDREAD, errors=0), prime=prime_big)
    add("seqwrite", "sequential write 1 GiB (new file) + sync", False,
        lambda t: [[[T, "seqwrite", os.path.join(t.mnt, "seqwrite.bin"), str(SEQWRITE_MIB)]],
                   [[T, "syncfs", t.mnt, t.upper]]],
        lambda c, t: expect(c, bytes=SEQWRITE_MIB << 20, errors=0), mutating=True)

    def chk_bigappend(c, t):
        expect(c, files=1, errors=0)
        st = os.lstat(os.path.join(t.mnt, BIG_SEQ))
        if st.st_size != BIG_SIZE + 1:
            raise RuntimeError("%s: size %d after append, want %d" % (BIG_SEQ, st.st_size, BIG_SIZE + 1))

    add("copyup_big", "copy-up: append 1 B to the 1 GiB lower file + sync", False,
        lambda t: [[[T, "append", t.mnt, os.path.join(DATA, "bigappend.list")]],
                   [[T, "syncfs", t.mnt, t.upper]]], chk_bigappend, mutating=True)

    def chk_untar(c, t):
        c = run_cmds([[[T, "walk", "readdir", "-r", os.path.join(t.mnt, UNTAR_TOP)]]])
        expect(c, entries=ctx.untar_entries, errors=0)

    add("untar", "untar %d files + sync" % N_UNTAR, False,
        lambda t: [[["tar", "-xf", os.path.join(DATA, "untar.tar"), "-C", t.mnt]],
                   [[T, "syncfs", t.mnt, t.upper]]], chk_untar, mutating=True)

    def chk_rm(c, t):
        if os.path.lexists(os.path.join(t.mnt, RM_TREE)):
            raise RuntimeError("%s still exists after rm -rf" % RM_TREE)
        if os.path.basename(RM_TREE) in os.listdir(os.path.join(t.mnt, os.path.dirname(RM_TREE))):
            raise RuntimeError("%s still listed after rm -rf" % RM_TREE)

    add("rm_rf", "rm -rf %d lower entries + sync" % ctx.rm_entries, False,
        lambda t: [[["rm", "-rf", os.path.join(t.mnt, RM_TREE)]],
                   [[T, "syncfs", t.mnt, t.upper]]], chk_rm, mutating=True)

    def chk_append(c, t):
        expect(c, files=N_APPEND, errors=0)
        for p in ctx.append_sample:
            st = os.lstat(os.path.join(t.mnt, p))
            if st.st_size != ctx.ref[p][2] + 1:
                raise RuntimeError("%s: size %d after append, want %d" % (p, st.st_size, ctx.ref[p][2] + 1))

    add("copyup", "copy-up: append 1 B to %d lower files + sync" % N_APPEND, False,
        lambda t: [[[T, "append", t.mnt, os.path.join(DATA, "append.list")]],
                   [[T, "syncfs", t.mnt, t.upper]]], chk_append, mutating=True)
    add("meta", "create+stat+unlink %d files + sync" % N_META, False,
        lambda t: [[[T, "meta", os.path.join(t.mnt, "tmp-meta"), str(N_META)]],
                   [[T, "syncfs", t.mnt, t.upper]]],
        lambda c, t: expect(c, files=N_META, errors=0), mutating=True, extra=True)
    add("par_stat_cold", "2 parallel stat walks (halves), cold", True, par_walk("stat"), chk_entries)
    add("par_stat_warm", "2 parallel stat walks (halves), warm", False, par_walk("stat"),
        chk_entries, warm_steps=walk("stat"), extra=True)
    add("par4_stat_cold", "4 parallel stat walks (quarters), cold", True, par_walk("stat", n=4),
        chk_entries)
    add("par_read_cold", "2 parallel readers (halves), cold", True, par_walk("read", True), chk_read)
    add("par4_read_cold", "4 parallel readers (quarters), cold", True, par_walk("read", True, 4),
        chk_read)
    for n in MANY_LAYERS:
        add("mount_%d" % n, "mount time, %d lower layers" % n, False, None, mount_layers=n)

    only = os.environ.get("BENCH_WORKLOADS")
    if not only:
        W = [w for w in W if not w["extra"]]
    if QUICK:
        W = [w for w in W if w["cold"] or w["mutating"] or w["mount_layers"]]
    if only:
        names = only.split(",")
        bad = [n for n in names if n not in [w["id"] for w in W]]
        if bad:
            die("unknown workload(s): %s (known: %s)" % (",".join(bad), ",".join(w["id"] for w in W)))
        W = [w for w in W if w["id"] in names]
    return W


def settle():
    # write back what earlier steps left dirty on the data and scratch filesystems, so that
    # the timed part does not pay for it. syncfs, not a global sync: another user's hung
    # FUSE mount must not hang the benchmark.
    subprocess.run([TOOL, "syncfs", DATA, SCRATCH.mnt], check=True)


def drop_caches():
    settle()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


PREFAULT_MIB = 1024


def prefault():
    """Makes the memory that a cold run will fill with page cache cheap to allocate again.

    These VMs report free memory to the host (virtio-balloon free page reporting); the
    host takes reported pages away, and faulting them back in costs the guest far more
    than the I/O it is timing: a cold 256 MiB read took 0.08 s when the previous
    measurement had just freed its pages and 0.4 s when it was the first after a while
    -- always the first target in the interleave order. Touching (and freeing) a fixed
    amount of memory right before the timed part gives every target the same start."""
    subprocess.run([TOOL, "touch", str(PREFAULT_MIB)], check=True)


def prime_cmds(w, layers):
    # read what the cold run will read from the lower layers directly, so that every target
    # finds it in the same place -- the host's cache, not the guest's (dropped next)
    if w["prime"]:
        return w["prime"](layers)
    mode = "read" if "read" in w["id"] else "stat"
    return [[[TOOL, "walk", mode, "-x", "big", "-r", l] for l in layers]]


IDLE_WAIT = float(os.environ.get("BENCH_IDLE_WAIT", "10"))  # per measurement
IDLE_BUDGET = [float(os.environ.get("BENCH_IDLE_BUDGET", "120"))]  # per run, in total


def cpu_busy(interval=0.25):
    """The fraction of CPU time spent outside idle/iowait over interval seconds."""
    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]
    t1, i1 = sample()
    time.sleep(interval)
    t2, i2 = sample()
    return 1.0 - (i2 - i1) / max(1, t2 - t1)


def wait_idle():
    """Waits (up to BENCH_IDLE_WAIT seconds) until other work on the machine has
    calmed down: on a shared 2-CPU box a concurrent test run doubles some timings.
    Returns the last busy fraction seen (recorded with each sample)."""
    start = time.time()
    deadline = start + min(IDLE_WAIT, IDLE_BUDGET[0])
    busy = cpu_busy()
    while busy > 0.25 and time.time() < deadline:
        busy = cpu_busy(0.5)
    IDLE_BUDGET[0] = max(0.0, IDLE_BUDGET[0] - (time.time() - start))
    return busy


def measure(t, w, layers):
    """One measurement: fresh upper, fresh mount, (warm-up | drop caches), timed steps,
    check, unmount. Returns (seconds, rss-or-None)."""
    if w["mount_layers"]:
        return measure_mount(t, w)
    t.mount(layers)
    try:
        if w["warm_steps"]:
            run_cmds(w["warm_steps"](t))
        steps = w["steps"](t)
        load = wait_idle()
        if w["cold"]:
            run_cmds(prime_cmds(w, layers))
            drop_caches()
        else:
            settle()
        prefault()
        t0 = time.perf_counter()
        c = run_cmds(steps)
        dt = time.perf_counter() - t0
        rss = t.rss_kib() if w["id"] == "stat_cold" else None
        if w["check"]:
            w["check"](c, t)
    finally:
        t.umount()
    return dt, rss, load


def measure_mount(t, w):
    """Mount time: from starting the mount command until it returns with the mount live
    (stratafs and fuse-overlayfs return once the kernel's INIT is answered)."""
    n = w["mount_layers"]
    many = ["many/%d" % i for i in range(1, n + 1)]
    load = wait_idle()
    settle()
    t.mount(many, cwd=DATA)
    try:
        dt = t.mount_seconds
        names = os.listdir(t.mnt)
        want = n + 2  # f1..fN, etc, shared
        if len(names) != want or len(os.listdir(os.path.join(t.mnt, "shared"))) != n:
            raise RuntimeError("%s with %d layers: %d entries at the root, want %d"
                               % (t.name, n, len(names), want))
    finally:
        t.umount()
    return dt, None, load


# --------------------------------------------------------------------------------------
# profile mode: FUSE requests per workload (and syscalls with BENCH_STRACE=1)
# --------------------------------------------------------------------------------------

OPCODE_RE = re.compile(r"opcode: (\w+)")


def proc_cpu(pid):
    """utime+stime of the whole process (all threads), in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        v = f.read().rsplit(")", 1)[1].split()
    return (int(v[11]) + int(v[12])) / os.sysconf("SC_CLK_TCK")


def profile_once(t, w, layers, debug_log=None, strace_out=None):
    """One profiled run of w on t: returns (seconds, server CPU seconds, log start, log end)."""
    t.mount(layers, debug_log=debug_log)
    st = None
    try:
        if w["warm_steps"]:
            run_cmds(w["warm_steps"](t))
        if w["cold"]:
            run_cmds(prime_cmds(w, layers))
            drop_caches()
        else:
            settle()
        prefault()
        start = end = 0
        if debug_log is not None:
            time.sleep(0.2)
            debug_log.flush()
            start = os.path.getsize(debug_log.name)
        if strace_out:
            st = subprocess.Popen(["strace", "-c", "-f", "-qq", "-o", strace_out, "-p", str(t.pid)],
                                  stdin=subprocess.DEVNULL)
            time.sleep(0.5)
        cpu0 = proc_cpu(t.pid)
        t0 = time.perf_counter()
        c = run_cmds(w["steps"](t))
        dt = time.perf_counter() - t0
        cpu = proc_cpu(t.pid) - cpu0
        if w["check"]:
            w["check"](c, t)
        if debug_log is not None:
            time.sleep(0.3)
            end = os.path.getsize(debug_log.name)
    finally:
        if st is not None:
            st.send_signal(signal.SIGINT)
            st.wait(30)
        t.umount()
    return dt, cpu, start, end


def profile(targets, W, layers):
    """Per FUSE target and workload: FUSE requests by opcode (a run with the server in
    debug mode), the time and the server's CPU time (a normal run), and with
    BENCH_STRACE=1 the server's syscalls (a run under strace -c -f)."""
    res = {}
    for t in targets:
        if t.exe is None:
            continue
        res[t.name] = {}
        for w in W:
            if w["mount_layers"]:
                continue
            logpath = os.path.join(OUT, "profile-%s-%s.log" % (t.name, w["id"]))
            with open(logpath, "wb") as lf:
                _, _, start, end = profile_once(t, w, layers, debug_log=lf)
            with open(logpath, "rb") as lf:
                lf.seek(start)
                text = lf.read(end - start).decode(errors="replace")
            os.unlink(logpath)
            ops = collections.Counter(OPCODE_RE.findall(text))
            dt, cpu, _, _ = profile_once(t, w, layers)
            entry = {"seconds": round(dt, 3), "server_cpu_seconds": round(cpu, 3),
                     "requests": sum(ops.values()), "opcodes": dict(ops.most_common())}
            if STRACE:
                spath = os.path.join(OUT, "strace-%s-%s.txt" % (t.name, w["id"]))
                profile_once(t, w, layers, strace_out=spath)
                with open(spath) as f:
                    entry["strace"] = f.read()
            res[t.name][w["id"]] = entry
            n = max(1, entry["requests"])
            log("profile %-15s %-14s %6d requests %6.3f s (%5.1f us/req) server CPU %6.3f s (%5.1f us/req)  %s" % (
                t.name, w["id"], entry["requests"], dt, dt / n * 1e6, cpu, cpu / n * 1e6,
                " ".join("%s=%d" % kv for kv in ops.most_common(5))))
    with open(os.path.join(OUT, "profile.json"), "w") as f:
        json.dump(res, f, indent=1)
    with open(os.path.join(OUT, "profile.txt"), "w") as f:
        for tn, r in res.items():
            for wid, e in r.items():
                f.write("%s %s: %d requests, %.3f s, server CPU %.3f s: %s\n" % (
                    tn, wid, e["requests"], e["seconds"], e["server_cpu_seconds"],
                    " ".join("%s=%d" % kv for kv in e["opcodes"].items())))
                if "strace" in e:
                    f.write(e["strace"] + "\n")
    log("bench: wrote %s/profile.{txt,json}" % OUT)


# --------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------

def cmd_out(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine_facts():
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) >> 10
    fovl = cmd_out([FUSE_OVERLAYFS, "--version"])
    return {
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "mem_mib": mem,
        "fuse_overlayfs": " ".join(l for l in fovl.splitlines() if "fuse-overlayfs" in l),
        "fuse_overlayfs_deb": cmd_out(["dpkg-query", "-W", "-f", "${Version}", "fuse-overlayfs"]),
        "libfuse_pkgconfig": cmd_out(["pkg-config", "--modversion", "fuse3"]),
        "libfuse_deb": cmd_out(["dpkg-query", "-W", "-f", "${Version}", "libfuse3-3"]),
        "stratafs_git": cmd_out(["git", "-C", REPO, "describe", "--always", "--dirty"]),
        "data_fs": cmd_out(["findmnt", "-no", "FSTYPE,SOURCE", "-T", DATA]),
        "nofile_limit": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
        # what an idle CPU does decides what a wake-up costs (docs/performance.md)
        "cpuidle": read_first("/sys/devices/system/cpu/cpuidle/current_driver"),
        "guest_halt_poll_ns": read_first("/sys/module/haltpoll/parameters/guest_halt_poll_ns"),
    }


def read_first(path):
    """The first line of a file, or "" when it cannot be read."""
    try:
        with open(path) as f:
            return f.readline().strip()
    except OSError:
        return ""


def fmt_s(v):
    return "-" if v is None else ("%.3f" % v if v < 100 else "%.1f" % v)


def fmt_r(a, b):
    return "-" if a is None or b is None or b == 0 else "%.2f" % (a / b)


def report(targets, W, samples, loads, rss, facts, info, ctx, mount_opts, elapsed):
    names = [t.name for t in targets]
    med = {w["id"]: {n: (statistics.median(samples[w["id"]][n]) if samples[w["id"]][n] else None)
                     for n in names} for w in W}
    pairs = []
    if "stratafs" in names and "kernel" in names:
        pairs.append(("stratafs", "kernel", "s/k"))
    if "stratafs" in names and "fuse-overlayfs" in names:
        pairs.append(("stratafs", "fuse-overlayfs", "s/f"))
    if "fuse-overlayfs" in names and "kernel" in names:
        pairs.append(("fuse-overlayfs", "kernel", "f/k"))
    if "stratafs-pt" in names and "kernel" in names:
        pairs.append(("stratafs-pt", "kernel", "pt/k"))
    if "stratafs-pt" in names and "fuse-overlayfs" in names:
        pairs.append(("stratafs-pt", "fuse-overlayfs", "pt/f"))
    short = {"kernel": "kernel", "fuse-overlayfs": "fuse-ovl", "stratafs": "stratafs",
             "stratafs-pt": "strata-pt"}
    lines = []
    lines.append("strata bench: %d repetition(s), medians in seconds; ratios >1 mean slower" % N)
    lines.append("%s, %d CPUs, %s; %s; libfuse %s; stratafs %s" % (
        facts["kernel"], facts["cpus"], facts["cpu_model"], facts["fuse_overlayfs"],
        facts["libfuse_deb"] or facts["libfuse_pkgconfig"], facts["stratafs_git"]))
    lines.append("cpuidle: %s, guest_halt_poll_ns %s" % (facts["cpuidle"] or "-",
                                                        facts["guest_halt_poll_ns"] or "-"))
    lines.append("tree: %d entries (%d regular files, %d directories) in 3 lower layers"
                 % (ctx.entries, ctx.files, ctx.dirs))
    for t in targets:
        if t.exe and "stratafs" in t.name:
            v = subprocess.run([t.exe, "--version"], capture_output=True, text=True).stdout.strip()
            lines.append("%s: %s%s" % (t.name, v, ", -o " + t.opts if t.opts else ""))
    lines.append("")
    hdr = "%-14s %-47s" % ("id", "workload") + "".join("%10s" % short.get(n, n) for n in names) + \
        "".join("%7s" % p[2] for p in pairs)
    lines.append(hdr)
    lines.append("-" * len(hdr))
    rows = []
    for w in W:
        m = med[w["id"]]
        line = "%-14s %-47s" % (w["id"], w["desc"][:47]) + "".join("%10s" % fmt_s(m[n]) for n in names) + \
            "".join("%7s" % fmt_r(m[a], m[b]) for a, b, _ in pairs)
        lines.append(line)
        row = {"id": w["id"], "workload": w["desc"], "cold": w["cold"]}
        for n in names:
            row[n + "_s"] = m[n]
            row[n + "_samples"] = samples[w["id"]][n]
            row[n + "_busy_before"] = loads[w["id"]][n]
        for a, b, _ in pairs:
            row["%s_over_%s" % (a, b)] = (m[a] / m[b]) if m[a] and m[b] else None
        rows.append(row)
    lines.append("")
    for n in names:
        if rss.get(n):
            r = rss[n]
            lines.append("%s server after the cold stat walk: RSS %d KiB (peak %d KiB), %d threads, %d fds"
                         % (n, r["VmRSS"], r["VmHWM"], r["Threads"], r["fds"]))
    busy = [b for w in W for n in names for b in loads[w["id"]][n]]
    lines.append("load average (1 min) at start %.2f, at end %.2f; %d of %d measurements started "
                 "with other work using >25%% CPU; total time %.0f s"
                 % (facts["load1_start"], facts["load1_end"], sum(1 for b in busy if b > 0.25),
                    len(busy), elapsed))
    text = "\n".join(lines) + "\n"
    with open(os.path.join(OUT, "results.txt"), "w") as f:
        f.write(text)
    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump({"machine": facts, "repetitions": N, "quick": QUICK,
                   "dataset": {k: v for k, v in info.items() if k != "layers"} | {
                       "entries": ctx.entries, "regular_files": ctx.files,
                       "small_bytes": ctx.small_bytes},
                   "mount_options": mount_opts, "server_after_stat_cold": rss,
                   "targets": names, "workloads": rows, "elapsed_s": round(elapsed, 1)}, f, indent=1)
    chart(names, W, med)
    with open(os.path.join(OUT, "results.csv"), "w", newline="") as f:
        wr = csv.writer(f)
        cols = ["id", "workload"] + [n + "_s" for n in names] + ["%s_over_%s" % (a, b) for a, b, _ in pairs]
        wr.writerow(cols)
        for row in rows:
            wr.writerow([row["id"], row["workload"]] +
                        ["%.4f" % row[c] if isinstance(row[c], float) else row[c] for c in cols[2:]])
    return text


# --------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------

def chart(names, W, med):
    """results.png: per workload, each target's median as a ratio to the kernel's (log
    scale), drawn by gnuplot (gnuplot-nox) when it is installed."""
    if "kernel" not in names or subprocess.run(["sh", "-c", "command -v gnuplot"],
                                               capture_output=True).returncode != 0:
        return
    others = [n for n in names if n != "kernel"]
    dat = os.path.join(OUT, "results-ratios.dat")
    with open(dat, "w") as f:
        f.write("workload " + " ".join(others) + "\n")
        for w in W:
            m = med[w["id"]]
            k = m["kernel"]
            f.write(w["id"] + " " + " ".join(
                "%.3f" % (m[n] / k) if m[n] and k else "NaN" for n in others) + "\n")
    png = os.path.join(OUT, "results.png")
    script = """
set terminal pngcairo noenhanced size 1400,640 font ",10"
set output '%s'
set title "strata bench: median time as a ratio to the kernel's overlayfs (log scale; 1 = as fast; lower is better)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set logscale y 2
set yrange [0.25:*]
set ytics (0.25, 0.5, 1, 2, 4, 8, 16, 32)
set grid ytics
set xtics rotate by -40 scale 0
set key top left
set arrow from graph 0, first 1 to graph 1, first 1 nohead lc rgb "black" lw 2
set arrow from graph 0, first 2 to graph 1, first 2 nohead lc rgb "red" dt 2
plot '%s' using 2:xtic(1) title columnheader(2)%s
""" % (png, dat, "".join(", '' using %d title columnheader(%d)" % (i + 2, i + 2)
                          for i in range(1, len(others))))
    p = subprocess.run(["gnuplot"], input=script, capture_output=True, text=True)
    if p.returncode != 0:
        log("bench: gnuplot failed: %s" % p.stderr.strip()[-300:])


def build_tool():
    src = os.path.join(HERE, "benchtool.c")
    if os.path.exists(TOOL) and os.path.getmtime(TOOL) >= os.path.getmtime(src):
        return
    cc = os.environ.get("CC", "cc")
    subprocess.run([cc, "-O2", "-Wall", "-Wextra", "-D_GNU_SOURCE", "-o", TOOL, src], check=True)


def main():
    if os.geteuid() != 0:
        print("bench: needs root (kernel overlay mounts, drop_caches); skipping")
        return 77
    os.makedirs(OUT, exist_ok=True)
    build_tool()

    targets = []
    want = os.environ.get("BENCH_TARGETS", "kernel,fuse-overlayfs,stratafs").split(",")
    for n in want:
        if n == "kernel":
            targets.append(Target("kernel"))
        elif n == "fuse-overlayfs":
            if not os.access(FUSE_OVERLAYFS, os.X_OK) and FUSE_OVERLAYFS == "/usr/bin/fuse-overlayfs":
                log("bench: installing Debian's fuse-overlayfs")
                subprocess.run(["apt-get", "install", "-y", "-q", "fuse-overlayfs"])
            if not os.access(FUSE_OVERLAYFS, os.X_OK):
                die("%s not found: apt-get install fuse-overlayfs" % FUSE_OVERLAYFS)
            targets.append(Target("fuse-overlayfs", FUSE_OVERLAYFS, "fuse.fuse-overlayfs"))
        elif n == "stratafs":
            if not os.access(STRATAFS, os.X_OK):
                die("%s not found: make build/stratafs" % STRATAFS)
            targets.append(Target("stratafs", STRATAFS, "fuse.stratafs"))
        else:
            die("unknown target %s" % n)
    if STRATAFS_PT:
        targets.append(Target("stratafs-pt", os.path.abspath(STRATAFS_PT), "fuse.stratafs", PT_OPTS))

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    t_start = time.time()
    load_start = os.getloadavg()[0]
    try:
        info = dataset()
        layers = info["layers"]
        SCRATCH.attach()

        # ---- verify: every target serves the same tree (the kernel's is the reference) ----
        log("bench: verifying that every target serves the same tree")
        refs = {}
        mount_opts = {}
        for t in targets:
            t.mount(layers)
            try:
                mount_opts[t.name] = mount_options(t.mnt)
                refs[t.name], e = manifest(t.mnt)
            finally:
                t.umount()
            if refs[t.name] is None:
                die("%s: walking the mount failed: %s" % (t.name, e))
        ref_name = "kernel" if "kernel" in refs else targets[0].name
        ref = refs[ref_name]
        with open(os.path.join(DATA, "model.json")) as f:
            model = json.load(f)
        if set(model) != set(ref):
            d = sorted(set(model) ^ set(ref))
            log("bench: warning: %s's tree differs from the generator's model in %d paths, e.g. %s"
                % (ref_name, len(d), d[:5]))
        for t in targets:
            d = compare(ref, refs[t.name])
            if d:
                die("%s does not serve the tree that %s serves (%d differences):\n  %s"
                    % (t.name, ref_name, len(d), "\n  ".join(d[:20])))
            nl = sum(1 for p in ref if ref[p][0] != "d" and ref[p][3] != refs[t.name][p][3])
            log("  %-15s %d entries, identical%s" % (
                t.name, len(refs[t.name]), "" if not nl else " (nlink differs on %d non-dirs)" % nl))

        ctx = Ctx()
        ctx.ref = ref
        ctx.entries = len(ref)
        ctx.dirs = sum(1 for p in ref if ref[p][0] == "d")
        small = [p for p in ref if ref[p][0] == "f"]
        ctx.files = len(small)
        small = [p for p in small if not p.startswith("srv/big/")]
        ctx.small_files = len(small)
        ctx.small_bytes = sum(ref[p][2] for p in small)
        ctx.untar_entries = info["untar_entries"]
        ctx.rm_entries = sum(1 for p in ref if p.startswith(RM_TREE + "/"))
        ctx.append_sample = info["append"]
        for t in targets:
            t.plans = {}
            for mode in ("stat", "read"):
                for n in (2, 4):
                    for i, plan in enumerate(plan_shards(ref, t.mnt, n, mode == "read")):
                        path = os.path.join(RUN, t.name, "plan-%s-%d-%d" % (mode, n, i))
                        with open(path, "w") as f:
                            f.write("\n".join(plan) + "\n")
                        t.plans[(mode, n, i)] = path
        W = workloads(ctx)

        if PROFILE:
            profile(targets, W, layers)
            return 0

        samples = {w["id"]: {t.name: [] for t in targets} for w in W}
        loads = {w["id"]: {t.name: [] for t in targets} for w in W}
        rss = {}
        for rep in range(N):
            # rotate the order each repetition: on these VMs the first measurement after a
            # different workload is sometimes slower (host-side memory and cache effects), so
            # every target takes that place equally often, and the median drops it
            order = targets[rep % len(targets):] + targets[:rep % len(targets)]
            for w in W:
                for t in order:
                    dt, r, load = measure(t, w, layers)
                    samples[w["id"]][t.name].append(dt)
                    loads[w["id"]][t.name].append(round(load, 2))
                    if r:
                        rss.setdefault(t.name, []).append(r)
                log("rep %d/%d %-14s %s" % (rep + 1, N, w["id"], "  ".join(
                    "%s %.3f" % (t.name, samples[w["id"]][t.name][-1]) for t in targets)))
        rss = {n: {k: int(statistics.median(x[k] for x in v)) for k in v[0]} for n, v in rss.items()}
        facts = machine_facts()
        facts["load1_start"] = load_start
        facts["load1_end"] = os.getloadavg()[0]
        text = report(targets, W, samples, loads, rss, facts, info, ctx, mount_opts,
                      time.time() - t_start)
        log("")
        sys.stdout.write(text)
        log("bench: wrote %s/results.{txt,json,csv}" % OUT)
        return 0
    except KeyboardInterrupt:
        log("bench: interrupted")
        return 130
    except RuntimeError as e:
        log("bench: error: %s" % e)
        return 1
    finally:
        cleanup()


if __name__ == "__main__":
    sys.exit(main())
