#!/usr/bin/env python3
"""stresswl.py - a concurrent workload whose result does not depend on scheduling.

  stresswl.py build LOWER UPPER            the layers (deterministic)
  stresswl.py run MNT WORKERS OPS SEED OUT  WORKERS processes, OPS operations each

Worker w only touches names starting with "w<w>_", but in shared directories (lower,
upper and merged ones) and on shared lower objects it owns by name: creates, writes,
appends (copy-ups), truncates, renames (also across directories, replacing, of
directories with lower content), hard links, symlinks, unlinks, mkdir, rmdir, chmod.
Every outcome (the errno included) is written to OUT/w<w>.log, so that the run on
stratafs and the run on the kernel's overlayfs can be compared line by line, and the
final trees must be identical.
"""
import errno
import os
import random
import sys

DIRS = ["", "d0", "d1", "d1/sub", "d2", "u0"]


def build(lower, upper, nworkers=6):
    r = random.Random(42)
    for d in DIRS:
        if d != "u0":
            os.makedirs(os.path.join(lower, d), exist_ok=True)
    os.makedirs(os.path.join(upper, "u0"), exist_ok=True)
    for w in range(nworkers):
        for d in DIRS:
            base = upper if d == "u0" else lower
            for i in range(4):
                with open(os.path.join(base, d, "w%d_f%d" % (w, i)), "wb") as f:
                    f.write(r.randbytes(r.choice([0, 10, 5000, 70000])))
            os.makedirs(os.path.join(base, d, "w%d_dir" % w, "in"), exist_ok=True)
            with open(os.path.join(base, d, "w%d_dir" % w, "in", "deep"), "wb") as f:
                f.write(b"deep %d %s\n" % (w, d.encode()))
        # a lower file with two names (hard link kept across copy-up)
        os.link(os.path.join(lower, "d0", "w%d_f1" % w), os.path.join(lower, "d2", "w%d_hl" % w))


def worker(mnt, w, nops, seed, out):
    r = random.Random(seed * 1000 + w)
    pre = "w%d_" % w
    log = open(os.path.join(out, "w%d.log" % w), "w")

    def P(d, n):
        return os.path.join(mnt, d, n) if d else os.path.join(mnt, n)

    def name():
        return pre + r.choice(["f0", "f1", "f2", "f3", "n0", "n1", "n2", "dir", "hl", "s0", "x"])

    def step(desc, fn):
        try:
            res = fn()
            log.write("%s = %s\n" % (desc, "ok" if res is None else res))
        except OSError as e:
            log.write("%s = %s\n" % (desc, errno.errorcode.get(e.errno, e.errno)))

    for i in range(nops):
        d, d2 = r.choice(DIRS), r.choice(DIRS)
        n, n2 = name(), name()
        k = r.randrange(100)
        p, p2 = P(d, n), P(d2, n2)
        data = r.randbytes(r.choice([1, 100, 4096, 20000]))
        if k < 15:
            def f():
                with open(p, "ab") as fh:
                    fh.write(data)
            step("append %s/%s %d" % (d, n, len(data)), f)
        elif k < 25:
            def f():
                fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                try:
                    os.write(fd, data)
                finally:
                    os.close(fd)
            step("write %s/%s %d" % (d, n, len(data)), f)
        elif k < 32:
            def f():
                with open(p, "rb") as fh:
                    b = fh.read()
                return "%d bytes, sum %d" % (len(b), sum(b[::97]))
            step("read %s/%s" % (d, n), f)
        elif k < 37:
            size = r.randrange(30000)
            step("truncate %s/%s %d" % (d, n, size), lambda: os.truncate(p, size))
        elif k < 55:
            step("rename %s/%s %s/%s" % (d, n, d2, n2), lambda: os.rename(p, p2))
        elif k < 62:
            step("link %s/%s %s/%s" % (d, n, d2, n2), lambda: os.link(p, p2))
        elif k < 67:
            step("symlink %s/%s" % (d, n), lambda: os.symlink("../" + n2, p))
        elif k < 77:
            step("unlink %s/%s" % (d, n), lambda: os.unlink(p))
        elif k < 82:
            step("mkdir %s/%s" % (d, n), lambda: os.mkdir(p, 0o755))
        elif k < 87:
            step("rmdir %s/%s" % (d, n), lambda: os.rmdir(p))
        elif k < 91:
            mode = r.choice([0o600, 0o644, 0o755])
            def f():
                if not os.path.islink(p):
                    os.chmod(p, mode)
            step("chmod %s/%s %o" % (d, n, mode), f)
        elif k < 96:
            def f():
                st = os.lstat(p)
                if os.path.isdir(p):
                    return "dir mode %o" % st.st_mode
                return "mode %o nlink %d size %d" % (st.st_mode, st.st_nlink, st.st_size)
            step("stat %s/%s" % (d, n), f)
        else:
            def f():
                return ",".join(sorted(x for x in os.listdir(P(d, "")) if x.startswith(pre)))
            step("ls %s" % d, f)
    log.close()


def main():
    a = sys.argv[1:]
    if a[0] == "build":
        build(a[1], a[2])
    elif a[0] == "run":
        mnt, nw, nops, seed, out = a[1], int(a[2]), int(a[3]), int(a[4]), a[5]
        os.makedirs(out, exist_ok=True)
        pids = []
        for w in range(nw):
            pid = os.fork()
            if pid == 0:
                try:
                    worker(mnt, w, nops, seed, out)
                    os._exit(0)
                except BaseException as e:
                    print("worker %d: %r" % (w, e), file=sys.stderr)
                    os._exit(1)
            pids.append(pid)
        bad = 0
        for pid in pids:
            _, st = os.waitpid(pid, 0)
            bad += st != 0
        sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
