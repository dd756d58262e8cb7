#!/usr/bin/env python3
"""crashwl.py - crash-consistency workloads for stratafs (tests/bats/crash.bats).

A workload is a sequence of single-syscall operations on the merged view, driven
against an in-memory model of the tree. Before each operation the runner appends
"B <op>" to a log, after it "E": once the server is killed with SIGKILL the log
says which operations completed (each of them must be visible after a remount)
and which one was in flight (it may or may not be). The checker replays the log
on the model and accepts the merged view only if it equals the model after the
completed operations, or after those plus the one in flight: a state the
workload passed through. Anything else (a partial copy-up, a lost whiteout, a
renamed file shown twice, a temp file in view) is a failure.

  crashwl.py init  KIND STATE LOWER SEED     build the lower layer and the model
  crashwl.py prep  STATE MNT                 set-up ops through a mount (rmrf)
  crashwl.py run   KIND STATE MNT LOG SEED [PID MS]
                                            run ops until done or killed; with PID,
                                            SIGKILL it MS milliseconds after the start
  crashwl.py check STATE MNT LOG             verify, then save the chosen state

Kinds: copyup (writes into 4 MiB lower files), untar (members of a tar archive
extracted op by op over existing lower files), rename (a rename storm over lower
and upper files and directories), rmrf (rm -rf of a mixed lower/upper tree).
"""
import errno
import hashlib
import io
import json
import os
import pickle
import random
import stat
import sys
import signal
import tarfile
import threading
import time

CHUNK = 4096  # writes stay within one FUSE request


def h(data):
    return hashlib.sha256(data).hexdigest()[:16]


# The model: path -> ("d",) | ("f", bytearray) | ("l", target). "" is the root.
def parent(p):
    return p.rsplit("/", 1)[0] if "/" in p else ""


def children(m, d):
    pre = d + "/" if d else ""
    return [p for p in m if p and p.startswith(pre) and "/" not in p[len(pre):]]


def apply(m, op):
    """Applies op to the model m (the effect the syscall has once it succeeded)."""
    k = op[0]
    if k == "mkdir":
        m[op[1]] = ("d",)
    elif k == "create":  # O_CREAT|O_EXCL: an empty file
        m[op[1]] = ("f", bytearray())
    elif k == "trunc_open":  # open(O_TRUNC) on an existing file
        m[op[1]] = ("f", bytearray())
    elif k == "pwrite":
        _, p, off, data = op
        buf = m[p][1]
        if len(buf) < off:
            buf.extend(b"\0" * (off - len(buf)))
        buf[off:off + len(data)] = data
    elif k == "truncate":
        _, p, size = op
        buf = m[p][1]
        if size < len(buf):
            del buf[size:]
        else:
            buf.extend(b"\0" * (size - len(buf)))
    elif k == "symlink":
        m[op[1]] = ("l", op[2])
    elif k == "unlink" or k == "rmdir":
        del m[op[1]]
    elif k == "rename":
        _, src, dst = op
        moved = {p: v for p, v in m.items() if p == src or p.startswith(src + "/")}
        if dst in m:  # replaced (files only in these workloads)
            del m[dst]
        for p in moved:
            del m[p]
        for p, v in moved.items():
            m[dst + p[len(src):]] = v
    elif k == "link":
        m[op[2]] = ("f", m[op[1]][1])  # shares the buffer, as a hard link shares data
    else:
        raise ValueError(k)


def do_op(mnt, op, fds):
    """Performs op on the mount (one syscall that changes what is visible)."""
    k = op[0]
    P = lambda p: os.path.join(mnt, p)
    if k == "mkdir":
        os.mkdir(P(op[1]), 0o755)
    elif k == "create":
        fds[op[1]] = os.open(P(op[1]), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    elif k == "trunc_open":
        fds[op[1]] = os.open(P(op[1]), os.O_WRONLY | os.O_TRUNC)
    elif k == "pwrite":
        fd = fds.get(op[1])
        if fd is None:
            fd = os.open(P(op[1]), os.O_WRONLY)
            fds[op[1]] = fd
        n = os.pwrite(fd, op[3], op[2])
        if n != len(op[3]):
            raise OSError(errno.EIO, "short write %d" % n)
    elif k == "truncate":
        os.truncate(P(op[1]), op[2])
    elif k == "symlink":
        os.symlink(op[2], P(op[1]))
    elif k == "unlink":
        os.unlink(P(op[1]))
    elif k == "rmdir":
        os.rmdir(P(op[1]))
    elif k == "rename":
        os.rename(P(op[1]), P(op[2]))
    elif k == "link":
        os.link(P(op[1]), P(op[2]))


def close_fds(fds, keep=None):
    for p in list(fds):
        if p != keep:
            os.close(fds.pop(p))


# ---------------------------------------------------------------- workloads


def make_tar(rng):
    """A tar archive: directories, files of 0..40 KiB, symlinks, hard links; some
    members overwrite files of the lower layer (names shared with init's tree)."""
    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w", format=tarfile.GNU_FORMAT) as t:
        def add(name, kind, data=b"", target=""):
            ti = tarfile.TarInfo(name)
            ti.mtime = 1600000000
            if kind == "d":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                t.addfile(ti)
            elif kind == "f":
                ti.size, ti.mode = len(data), 0o644
                t.addfile(ti, io.BytesIO(data))
            elif kind == "l":
                ti.type, ti.linkname = tarfile.SYMTYPE, target
                t.addfile(ti)
            elif kind == "h":
                ti.type, ti.linkname = tarfile.LNKTYPE, target
                t.addfile(ti)
        for d in ("etc", "usr", "usr/lib", "usr/bin", "var", "var/lib", "opt"):
            add(d, "d")
        for i in range(120):
            d = rng.choice(["etc", "usr/lib", "usr/bin", "var/lib", "opt"])
            add("%s/f%03d" % (d, i), "f", rng.randbytes(rng.choice([0, 100, 4096, 9000, 40000])))
            if i % 10 == 3:
                add("%s/s%03d" % (d, i), "l", target="f%03d" % i)
            if i % 15 == 7:
                add("%s/h%03d" % (d, i), "h", target="%s/f%03d" % (d, i))
    return bio.getvalue()


def init(kind, state, lower, seed):
    rng = random.Random(seed)
    m = {"": ("d",)}

    def mk(p, v):
        m[p] = v
        full = os.path.join(lower, p)
        if v[0] == "d":
            os.makedirs(full, exist_ok=True)
        elif v[0] == "f":
            with open(full, "wb") as f:
                f.write(v[1])
        elif v[0] == "l":
            os.symlink(v[1], full)

    extra = {}
    if kind == "copyup":
        for i in range(6):
            mk("big%d" % i, ("f", bytearray(rng.randbytes(4 << 20))))
        mk("small", ("f", bytearray(b"small\n")))
    elif kind == "untar":
        for d in ("etc", "usr", "usr/lib", "usr/bin", "var", "var/lib", "opt"):
            mk(d, ("d",))
        for i in range(0, 120, 3):  # lower files the archive overwrites
            d = ["etc", "usr/lib", "usr/bin", "var/lib", "opt"][i % 5]
            mk("%s/f%03d" % (d, i), ("f", bytearray(b"lower %d\n" % i)))
        mk("etc/keep", ("f", bytearray(b"kept\n")))
        extra["tar"] = make_tar(rng)
        extra["done"] = 0
    elif kind == "rename":
        for d in range(4):
            mk("d%d" % d, ("d",))
            for i in range(5):
                mk("d%d/n%d" % (d, i), ("f", bytearray(b"content %d.%d\n" % (d, i) * 50)))
            mk("d%d/sub" % d, ("d",))
            mk("d%d/sub/deep" % d, ("f", bytearray(b"deep %d\n" % d)))
        mk("top", ("f", bytearray(rng.randbytes(300000))))
    elif kind == "rmrf":
        mk("tree", ("d",))
        for a in range(6):
            mk("tree/a%d" % a, ("d",))
            for b in range(4):
                mk("tree/a%d/b%d" % (a, b), ("d",))
                for i in range(8):
                    mk("tree/a%d/b%d/f%d" % (a, b, i), ("f", bytearray(b"%d.%d.%d\n" % (a, b, i))))
                mk("tree/a%d/b%d/ln" % (a, b), ("l", "f0"))
        mk("keep", ("f", bytearray(b"keep\n")))
        # made through a mount before the first cycle: upper files, copied-up lower
        # files, whiteouts and an opaque directory inside the tree
        prep = []
        for a in range(6):
            prep.append(("create", "tree/a%d/up" % a))
            prep.append(("pwrite", "tree/a%d/up" % a, 0, b"upper %d\n" % a))
            prep.append(("pwrite", "tree/a%d/b1/f2" % a, 0, b"copied up"))
            prep.append(("unlink", "tree/a%d/b2/f3" % a))
            prep.append(("rename", "tree/a%d/b0/f1" % a, "tree/a%d/b0/moved" % a))
        for i in range(8):
            prep.append(("unlink", "tree/a5/b3/f%d" % i))
        prep += [("unlink", "tree/a5/b3/ln"), ("rmdir", "tree/a5/b3"), ("mkdir", "tree/a5/b3"),
                 ("create", "tree/a5/b3/new")]
        extra["prep"] = prep
    else:
        raise SystemExit("unknown kind " + kind)
    save(state, {"kind": kind, "m": m, "extra": extra, "cycles": 0, "ops": 0})


def save(state, s):
    with open(state + ".new", "wb") as f:
        pickle.dump(s, f)
    os.replace(state + ".new", state)


def load(state):
    with open(state, "rb") as f:
        return pickle.load(f)


def gen_ops(s, rng):
    """Yields the next operations for the model in s (mutating s as they complete is
    the runner's job; generators look at s["m"] lazily)."""
    kind, m = s["kind"], s["m"]
    if kind == "copyup":
        # each big file is copied up by its first write; small ops in between
        order = ["big%d" % i for i in range(6)]
        rng.shuffle(order)
        for p in order:
            size = len(m[p][1])
            yield ("pwrite", p, rng.randrange(size), rng.randbytes(rng.randrange(1, 64)))
            if rng.random() < 0.3:
                yield ("truncate", p, rng.randrange(1, 4 << 20))
            yield ("trunc_open", "small")
            yield ("pwrite", "small", 0, b"rewritten %d\n" % rng.randrange(1000))
            for _ in range(3):
                size = len(m[p][1])
                yield ("pwrite", p, rng.randrange(max(size, 1)), rng.randbytes(rng.randrange(1, 64)))
    elif kind == "untar":
        with tarfile.open(fileobj=io.BytesIO(s["extra"]["tar"])) as t:
            members = t.getmembers()
            for i in range(s["extra"]["done"], len(members)):
                ti = members[i]
                name = ti.name
                if ti.isdir():
                    if name not in m:
                        yield ("mkdir", name)
                else:
                    if name in m:  # GNU tar unlinks what it replaces
                        yield ("unlink", name)
                    if ti.issym():
                        yield ("symlink", name, ti.linkname)
                    elif ti.islnk():
                        yield ("link", ti.linkname, name)
                    else:
                        yield ("create", name)
                        data = t.extractfile(ti).read()
                        for off in range(0, len(data), CHUNK):
                            yield ("pwrite", name, off, data[off:off + CHUNK])
                yield ("member_done", i + 1)
    elif kind == "rename":
        while True:
            ents = [p for p in m if p and m[p][0] in "fd"]
            src = rng.choice(ents)
            dirs = [p for p in m if m[p][0] == "d" and p != src and not p.startswith(src + "/")]
            d = rng.choice(dirs)
            dst = (d + "/" if d else "") + "r%d" % rng.randrange(40)
            if dst == src or dst.startswith(src + "/"):
                continue
            if dst in m and (m[dst][0] != "f" or m[src][0] != "f"):
                continue  # replace only file by file
            yield ("rename", src, dst)
    elif kind == "rmrf":
        def rm(p):
            for c in sorted(children(m, p)):
                if m[c][0] == "d":
                    yield from rm(c)
                else:
                    yield ("unlink", c)
            yield ("rmdir", p)
        if "tree" in m:
            yield from rm("tree")


def run(state, mnt, log, seed, killpid=0, delay_ms=0, max_ops=100000):
    s = load(state)
    rng = random.Random(seed)
    fds = {}
    lfd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(lfd, b"S\n")  # started: the kill delay counts from here
    t0 = time.monotonic()
    killer = None
    if killpid:
        # the kill comes from here, timed in-process: a shell's sleep and kill would add
        # milliseconds of their own, as long as a whole copy-up workload
        killer = threading.Timer(delay_ms / 1000.0, os.kill, (killpid, signal.SIGKILL))
        killer.start()
    n = 0
    for op in gen_ops(s, rng):
        if op[0] == "member_done":
            s["extra"]["done"] = op[1]
            continue
        if n >= max_ops:
            break
        keep = op[1] if op[0] == "pwrite" else None
        os.write(lfd, b"B " + json.dumps(enc(op)).encode() + b"\n")
        try:
            close_fds(fds, keep)
            do_op(mnt, op, fds)
        except OSError as e:
            os.write(lfd, b"X %d\n" % e.errno)
            if killer:
                killer.join()
            # killed server: ENOTCONN (new requests) or ECONNABORTED (in flight)
            sys.exit(3 if e.errno in (errno.ENOTCONN, errno.ECONNABORTED) else 4)
        os.write(lfd, b"E\n")
        apply(s["m"], op)
        n += 1
    close_fds(fds)
    os.write(lfd, b"D %d\n" % int((time.monotonic() - t0) * 1000))
    if killer:
        killer.join()  # finished first: the server is killed all the same


def enc(op):
    return [x.hex() if isinstance(x, bytes) else x for x in op] + (
        ["__bytes"] if op[0] == "pwrite" else [])


def dec(l):
    if l and l[-1] == "__bytes":
        l = l[:-1]
        l[3] = bytes.fromhex(l[3])
    return tuple(l)


# ---------------------------------------------------------------- checking


def snapshot(mnt):
    """The merged view: path -> ("d",) | ("f", hash) | ("l", target) | ("?", mode)."""
    out = {"": ("d",)}
    for top, dirs, files, dfd in os.fwalk(mnt):
        rel = os.path.relpath(top, mnt)
        rel = "" if rel == "." else rel
        for n in dirs + files:
            p = (rel + "/" if rel else "") + n
            st = os.lstat(n, dir_fd=dfd)
            if stat.S_ISDIR(st.st_mode):
                out[p] = ("d",)
            elif stat.S_ISREG(st.st_mode):
                fd = os.open(n, os.O_RDONLY, dir_fd=dfd)
                with os.fdopen(fd, "rb") as f:
                    data = f.read()
                if len(data) != st.st_size:
                    out[p] = ("f", "size %d but %d bytes read" % (st.st_size, len(data)))
                else:
                    out[p] = ("f", h(data))
            elif stat.S_ISLNK(st.st_mode):
                out[p] = ("l", os.readlink(n, dir_fd=dfd))
            else:
                out[p] = ("?", oct(st.st_mode))
    return out


def view(m):
    return {p: (("f", h(bytes(v[1]))) if v[0] == "f" else v) for p, v in m.items()}


def diff(a, b, limit=12):
    out = []
    for p in sorted(set(a) | set(b)):
        if a.get(p) != b.get(p):
            out.append("  %s: expected %s, found %s" % (p or "/", a.get(p), b.get(p)))
    return "\n".join(out[:limit]) + ("\n  ..." if len(out) > limit else "")


def check(state, mnt, log):
    s = load(state)
    m = s["m"]
    done, inflight = 0, None
    with open(log) as f:
        lines = f.read().splitlines()
    # the runner saved no model: replay its log
    cur = None
    for line in lines:
        if line.startswith("B "):
            cur = dec(json.loads(line[2:]))
        elif line == "E":
            apply(m, cur)
            done += 1
            cur = None
    inflight = cur
    got = snapshot(mnt)
    bad = [p for p in got if os.path.basename(p).startswith((".wh.", "#strata"))]
    if bad:
        print("internal names visible:", bad)
        return 1
    before = view(m)
    if got == before:
        chosen = "without"
    else:
        after = None
        if inflight is not None:
            import copy
            m2 = copy.deepcopy(m)
            apply(m2, inflight)
            after = view(m2)
        if after is not None and got == after:
            s["m"] = m2
            chosen = "with"
        else:
            print("merged view is not a state the workload passed through")
            print("after %d completed ops (in flight: %s):" % (done, short(inflight)))
            print(diff(before, got))
            if after is not None:
                print("or, with the op in flight applied:")
                print(diff(after, got))
            return 1
    if s["kind"] == "untar":
        # members fully extracted so far (the generator resumes after them)
        s["extra"]["done"] = untar_done(s)
    s["cycles"] += 1
    s["ops"] += done + (chosen == "with")
    save(state, s)
    print("ok: %d ops completed, in flight %s: %s" % (done, short(inflight), chosen))
    return 0


def untar_done(s):
    """Number of leading tar members whose extraction is complete in the model; a member
    cut short is redone from scratch (its partial file is unlinked first)."""
    m = s["m"]
    with tarfile.open(fileobj=io.BytesIO(s["extra"]["tar"])) as t:
        members = t.getmembers()
        for i, ti in enumerate(members):
            v = m.get(ti.name)
            if v is None:
                return i
            if ti.isfile() and not ti.islnk():
                if v[0] != "f" or bytes(v[1]) != t.extractfile(ti).read():
                    return i
            elif ti.issym() and v != ("l", ti.linkname):
                return i
            elif ti.islnk() and (v[0] != "f" or v[1] is not m.get(ti.linkname, (0, 0))[1]):
                return i
    return len(members)


def short(op):
    if op is None:
        return "none"
    return str(tuple(x if not isinstance(x, bytes) else "<%d bytes>" % len(x) for x in op))


def main():
    a = sys.argv[1:]
    if a[0] == "init":
        init(a[1], a[2], a[3], int(a[4]))
    elif a[0] == "prep":
        s = load(a[1])
        fds = {}
        for op in s["extra"].pop("prep"):
            close_fds(fds, op[1] if op[0] == "pwrite" else None)
            do_op(a[2], op, fds)
            apply(s["m"], op)
        close_fds(fds)
        save(a[1], s)
    elif a[0] == "run":
        run(a[2], a[3], a[4], int(a[5]), *[int(x) for x in a[6:8]])
    elif a[0] == "check":
        sys.exit(check(a[1], a[2], a[3]))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
