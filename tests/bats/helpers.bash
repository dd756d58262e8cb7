# Shared helpers for the stratafs behaviour suites: loading bats libraries,
# building layer sets, mounting stratafs and the kernel's overlayfs, unmounting
# (and waiting for the stratafs server to go away), complete tree listings, and
# compare_with_kernel, which runs the same change sequence on both and diffs
# the merged views and the on-disk uppers.
#
# Every mount made through these helpers is recorded in $BATS_TEST_TMPDIR and
# undone by common_teardown, also when a test fails half-way.

_strata_load_lib() {
	local name=$1 dir
	local IFS=:
	for dir in ${BATS_LIB_PATH:-} /usr/lib/bats /usr/local/lib/bats /usr/share/bats; do
		if [ -n "$dir" ] && [ -f "$dir/$name/load.bash" ]; then
			# shellcheck disable=SC1090
			source "$dir/$name/load.bash"
			return 0
		fi
	done
	echo "helpers.bash: cannot find $name (apt-get install $name)" >&2
	return 1
}
_strata_load_lib bats-support
_strata_load_lib bats-assert
_strata_load_lib bats-file

STRATA_REPO=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)
# STRATAFS may point at another fuse-overlayfs compatible program (the helpers
# were first validated with Debian's fuse-overlayfs). STRATAFS=kernel makes
# mount_strata mount the kernel's overlayfs instead: a self-test of the suites
# (every comparison must then pass; stratafs-only checks skip).
STRATAFS=${STRATAFS:-$STRATA_REPO/build/stratafs}
# Kernel reference options. index=on: hard links stay linked after copy-up
# (what stratafs promises). redirect_dir=on: directories with lower content
# can be renamed (no EXDEV). metacopy=off: copy-up copies data, as stratafs
# does. Override with KERNEL_OVL_OPTS to experiment.
KERNEL_OVL_OPTS=${KERNEL_OVL_OPTS:-index=on,redirect_dir=on,metacopy=off}
# How long unmount/exit may take before a test fails.
STRATA_EXIT_TIMEOUT=${STRATA_EXIT_TIMEOUT:-15}
# Fixed layer times: lower N gets 1000000000+N*10000000 s, upper 1300000000 s.
STRATA_UPPER_TIME=1300000000.444444444

# ---------------------------------------------------------------- setup

common_setup() {
	[ "$(id -u)" = 0 ] || skip "these suites run as root"
	[ -e /dev/fuse ] || skip "no /dev/fuse"
	if [ "$STRATAFS" != kernel ] && [ ! -x "$STRATAFS" ]; then
		fail "stratafs binary missing: $STRATAFS (run make)"
	fi
	T=$BATS_TEST_TMPDIR
	: >"$T/.mounts"
}

common_teardown() {
	cleanup_mounts
}

need_kernel_overlay() {
	grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || true
	grep -qw overlay /proc/filesystems || skip "kernel overlayfs not available"
}

# need_real_stratafs: skip a stratafs-only check in STRATAFS=kernel mode.
need_real_stratafs() {
	[ "$STRATAFS" != kernel ] || skip "stratafs-only check (STRATAFS=kernel self-test)"
}

need_python() {
	command -v python3 >/dev/null || skip "python3 not installed"
}

# ---------------------------------------------------------------- processes

# is_mounted MNT: MNT (absolute) is a mount point (works for dead FUSE mounts).
is_mounted() {
	awk -v m="$1" '$2 == m { found = 1 } END { exit !found }' /proc/self/mounts
}

# mount_type MNT: fs type of the mount at MNT.
mount_type() {
	awk -v m="$1" '$2 == m { t = $3 } END { print t }' /proc/self/mounts
}

# strata_pids MNT: PIDs of live stratafs processes whose argv names MNT.
strata_pids() {
	local mnt=$1 exe p pid
	[ "$STRATAFS" = kernel ] && return 0
	exe=$(readlink -f "$STRATAFS")
	for p in /proc/[0-9]*; do
		pid=${p#/proc/}
		# "(deleted)": the binary was rebuilt while this server ran
		case $(readlink "$p/exe" 2>/dev/null) in "$exe" | "$exe (deleted)") ;; *) continue ;; esac
		pid_alive "$pid" || continue
		if tr '\0' '\n' <"$p/cmdline" 2>/dev/null | grep -qxF -- "$mnt"; then
			echo "$pid"
		fi
	done
}

# strata_pids_under DIR: live stratafs processes whose argv mentions DIR.
strata_pids_under() {
	local dir=$1 exe p pid
	[ "$STRATAFS" = kernel ] && return 0
	exe=$(readlink -f "$STRATAFS")
	for p in /proc/[0-9]*; do
		pid=${p#/proc/}
		# "(deleted)": the binary was rebuilt while this server ran
		case $(readlink "$p/exe" 2>/dev/null) in "$exe" | "$exe (deleted)") ;; *) continue ;; esac
		pid_alive "$pid" || continue
		if tr '\0' '\n' <"$p/cmdline" 2>/dev/null | grep -qF -- "$dir"; then
			echo "$pid"
		fi
	done
}

# pid_alive PID: process exists and is not a zombie.
pid_alive() {
	local st
	st=$(awk '{ sub(/^.*\) /, ""); print $1 }' "/proc/$1/stat" 2>/dev/null) || return 1
	[ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

# wait_pids_gone TIMEOUT PID...: poll until every PID has exited.
wait_pids_gone() {
	local timeout=$1 deadline p alive
	shift
	deadline=$((SECONDS + timeout))
	while :; do
		alive=
		for p in "$@"; do
			pid_alive "$p" && alive+=" $p"
		done
		[ -z "$alive" ] && return 0
		if [ "$SECONDS" -ge "$deadline" ]; then
			echo "still running after ${timeout}s:$alive" >&2
			return 1
		fi
		sleep 0.05
	done
}

# wait_for TIMEOUT CMD...: poll CMD until it succeeds.
wait_for() {
	local timeout=$1 deadline
	shift
	deadline=$((SECONDS + timeout))
	until "$@"; do
		[ "$SECONDS" -ge "$deadline" ] && return 1
		sleep 0.05
	done
}

# ---------------------------------------------------------------- mounts

_register_mount() { echo "$1 $2" >>"$BATS_TEST_TMPDIR/.mounts"; }
_unregister_mount() {
	local f=$BATS_TEST_TMPDIR/.mounts
	[ -f "$f" ] || return 0
	awk -v m="$1" '{ p = $0; sub(/^[^ ]* /, "", p); if (p != m) print }' "$f" >"$f.new"
	mv "$f.new" "$f"
}

# mount_strata LOWERS UPPER WORK MNT [EXTRA_OPTS]
# UPPER/WORK empty = read-only mount. Fails (with stratafs's message) unless
# stratafs exits 0 and MNT is then a live FUSE mount. Sets STRATA_PID.
mount_strata() {
	local lowers=$1 upper=$2 work=$3 mnt extra=${5:-} opts out rc
	mnt=$(realpath -- "$4") || return 1
	if [ "$STRATAFS" = kernel ]; then
		STRATA_PID=
		mount_kernel "$@"
		return
	fi
	opts="lowerdir=$lowers"
	[ -n "$upper" ] && opts+=",upperdir=$upper,workdir=$work"
	[ -n "$extra" ] && opts+=",$extra"
	# output to a file, not a pipe: a daemon that kept our pipe open would
	# hang a command substitution (the stdio-detach test checks that apart)
	timeout -k 5 60 "$STRATAFS" -o "$opts" "$mnt" >"$BATS_TEST_TMPDIR/.mount.out" 2>&1 </dev/null &&
		rc=0 || rc=$?
	out=$(cat "$BATS_TEST_TMPDIR/.mount.out")
	if [ "$rc" != 0 ]; then
		echo "stratafs -o $opts $mnt: exit $rc: $out" >&2
		# it promised nothing is left mounted; clean up anyway
		is_mounted "$mnt" && _register_mount strata "$mnt"
		return 1
	fi
	_register_mount strata "$mnt"
	if ! is_mounted "$mnt"; then
		echo "stratafs exited 0 but $mnt is not mounted" >&2
		return 1
	fi
	case $(mount_type "$mnt") in
	fuse.* | fuse) ;;
	*)
		echo "$mnt: unexpected fs type $(mount_type "$mnt")" >&2
		return 1
		;;
	esac
	local pids
	mapfile -t pids < <(strata_pids "$mnt")
	STRATA_PID=${pids[0]:-}
	if [ -z "$STRATA_PID" ]; then
		echo "no stratafs process found serving $mnt" >&2
		return 1
	fi
	return 0
}

# mount_kernel LOWERS UPPER WORK MNT [EXTRA_OPTS]: kernel overlayfs with
# $KERNEL_OVL_OPTS (index/redirect_dir only when there is an upper).
mount_kernel() {
	local lowers=$1 upper=$2 work=$3 mnt extra=${5:-} opts
	mnt=$(realpath -- "$4") || return 1
	opts="lowerdir=$lowers"
	[ -n "$upper" ] && opts+=",upperdir=$upper,workdir=$work,$KERNEL_OVL_OPTS"
	[ -n "$extra" ] && opts+=",$extra"
	if ! mount -t overlay overlay -o "$opts" "$mnt"; then
		echo "kernel overlay mount -o $opts $mnt failed (dmesg: $(dmesg 2>/dev/null | grep -i overlay | tail -n 2))" >&2
		return 1
	fi
	_register_mount kernel "$mnt"
}

# fuse_abort MNT: abort the FUSE connection of MNT (a hung server), via fusectl.
fuse_abort() {
	local dev
	dev=$(awk -v m="$1" '$5 == m { print $3 }' /proc/self/mountinfo | tail -n1)
	[ -n "$dev" ] || return 1
	if [ ! -d /sys/fs/fuse/connections/"${dev#*:}" ]; then
		mountpoint -q /sys/fs/fuse/connections ||
			mount -t fusectl fusectl /sys/fs/fuse/connections 2>/dev/null
	fi
	[ -e /sys/fs/fuse/connections/"${dev#*:}"/abort ] &&
		echo 1 >/sys/fs/fuse/connections/"${dev#*:}"/abort
}

# umount_strata MNT: unmount and wait (bounded) for its server to exit.
# Fails if the unmount needed force or the server did not exit by itself.
umount_strata() {
	local mnt pids deadline rc=0
	mnt=$(realpath -m -- "$1")
	if [ "$(mount_type "$mnt")" = overlay ]; then # STRATAFS=kernel
		umount_kernel "$mnt"
		return
	fi
	pids=$(strata_pids "$mnt")
	if is_mounted "$mnt"; then
		deadline=$((SECONDS + STRATA_EXIT_TIMEOUT))
		until timeout -k 2 10 fusermount3 -u "$mnt" 2>/dev/null; do
			is_mounted "$mnt" || break
			if [ "$SECONDS" -ge "$deadline" ]; then
				echo "cannot unmount $mnt (busy or hung server); aborting the connection" >&2
				fuse_abort "$mnt"
				umount -l "$mnt"
				rc=1
				break
			fi
			sleep 0.1
		done
	fi
	_unregister_mount "$mnt"
	# shellcheck disable=SC2086
	if [ -n "$pids" ] && ! wait_pids_gone "$STRATA_EXIT_TIMEOUT" $pids; then
		echo "stratafs for $mnt did not exit after unmount; killing $pids" >&2
		# shellcheck disable=SC2086
		kill -9 $pids 2>/dev/null
		return 1
	fi
	return $rc
}

umount_kernel() {
	local mnt
	mnt=$(realpath -m -- "$1")
	umount "$mnt" || umount -l "$mnt" || return 1
	_unregister_mount "$mnt"
}

# kill_strata MNT: SIGKILL the server of MNT (if still alive), then remove the
# dead mount.
kill_strata() {
	local mnt pids
	mnt=$(realpath -m -- "$1")
	pids=$(strata_pids "$mnt")
	if [ -n "$pids" ]; then
		# shellcheck disable=SC2086
		kill -9 $pids
		# shellcheck disable=SC2086
		wait_pids_gone "$STRATA_EXIT_TIMEOUT" $pids || return 1
	fi
	timeout 10 fusermount3 -u "$mnt" 2>/dev/null || timeout 10 umount "$mnt" 2>/dev/null || umount -l "$mnt"
	_unregister_mount "$mnt"
	! is_mounted "$mnt"
}

# cleanup_mounts: undo every recorded mount (newest first) and make sure no
# stratafs process started for this test survives. Fails if one had to be
# killed.
cleanup_mounts() {
	local f=$BATS_TEST_TMPDIR/.mounts kind mnt rc=0 left
	if [ -f "$f" ]; then
		while read -r kind mnt; do
			[ -n "$mnt" ] || continue
			if [ "$kind" = kernel ]; then
				is_mounted "$mnt" && { umount "$mnt" 2>/dev/null || umount -l "$mnt"; }
			else
				umount_strata "$mnt" || rc=1
			fi
		done < <(tac "$f")
		: >"$f"
	fi
	left=$(strata_pids_under "$BATS_TEST_TMPDIR")
	if [ -n "$left" ]; then
		echo "leftover stratafs processes: $left" >&2
		# shellcheck disable=SC2086
		kill -9 $left 2>/dev/null
		rc=1
	fi
	# any mount still below the test dir (e.g. made without the helpers)
	awk -v d="$BATS_TEST_TMPDIR/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r |
		while read -r mnt; do umount -l "$mnt"; done
	return $rc
}

# ---------------------------------------------------------------- layers

# mk_layers DIR N: DIR/l1..lN (l1 topmost), DIR/upper, DIR/work, DIR/mnt.
mk_layers() {
	local dir=$1 n=$2 i
	for ((i = 1; i <= n; i++)); do mkdir -p "$dir/l$i"; done
	mkdir -p "$dir/upper" "$dir/work" "$dir/mnt"
}

# lowers_of DIR: "DIR/l1:DIR/l2:..." (topmost first).
lowers_of() {
	local dir=$1 i=1 out=
	while [ -d "$dir/l$i" ]; do
		out+="${out:+:}$dir/l$i"
		i=$((i + 1))
	done
	echo "$out"
}

# whiteout PATH: kernel-style whiteout (char 0/0).
whiteout() { rm -rf -- "$1" && mknod "$1" c 0 0; }
# opaque DIR: kernel-style opaque directory.
opaque() { mkdir -p -- "$1" && setfattr -n trusted.overlay.opaque -v y -- "$1"; }

# set_layer_times DIR: give every entry of each layer of DIR a fixed, distinct
# per-layer time (with nanoseconds) so that listings can compare mtimes.
set_layer_times() {
	python3 - "$1" "$STRATA_UPPER_TIME" <<'EOF'
import os, sys
base, upper_time = sys.argv[1], sys.argv[2]
def ns(t):
    sec, _, frac = t.partition(".")
    return int(sec) * 10**9 + int((frac + "000000000")[:9])
def settimes(top, t):
    # fd-relative (trees deeper than PATH_MAX), children before their directory
    for _, dirs, files, dfd in os.fwalk(top, topdown=False):
        for n in dirs + files:
            os.utime(n, ns=(t, t), dir_fd=dfd, follow_symlinks=False)
    os.utime(top, ns=(t, t), follow_symlinks=False)
i = 1
while os.path.isdir(os.path.join(base, "l%d" % i)):
    settimes(os.path.join(base, "l%d" % i), ns("%d.%d%d%d123456" % (1000000000 + i * 10000000, i, i, i)))
    i += 1
if os.path.isdir(os.path.join(base, "upper")):
    settimes(os.path.join(base, "upper"), ns(upper_time))
EOF
}

# to_kernel_forms LAYERDIR: rewrite the whiteout/opaque forms the kernel does
# not read (.wh.NAME, .wh..wh..opq, user.overlay.opaque, user.fuseoverlayfs.opaque)
# into char 0/0 whiteouts and trusted.overlay.opaque=y.
to_kernel_forms() {
	python3 - "$1" <<'EOF'
import os, sys
root = os.fsencode(sys.argv[1])
# fd-relative walk (deep trees); xattr calls go through /proc/self/fd
for top, dirs, files, dfd in os.fwalk(root):
    names = dirs + files
    st = os.fstat(dfd)
    me = "/proc/self/fd/%d" % dfd
    opq = False
    for key in (b"user.overlay.opaque", b"user.fuseoverlayfs.opaque"):
        try:
            v = os.getxattr(me, key)
            os.removexattr(me, key)
            if v == b"y":
                opq = True
        except OSError:
            pass
    for n in names:
        if n == b".wh..wh..opq":
            os.unlink(n, dir_fd=dfd)
            opq = True
        elif n.startswith(b".wh."):
            os.unlink(n, dir_fd=dfd)
            try:
                os.lstat(n[4:], dir_fd=dfd)
            except FileNotFoundError:
                os.mknod(n[4:], 0o600 | 0o020000, os.makedev(0, 0), dir_fd=dfd)
    if opq:
        os.setxattr(me, b"trusted.overlay.opaque", b"y")
    # keep directory times: the conversion is not a change the listings should see
    os.utime(dfd, ns=(st.st_atime_ns, st.st_mtime_ns))
EOF
}

# prand BYTES [SEED]: deterministic pseudo-random bytes on stdout (layer
# builders run twice and must produce the same content).
prand() {
	python3 -c 'import random, sys
r = random.Random(int(sys.argv[2]))
sys.stdout.buffer.write(r.randbytes(int(sys.argv[1])))' "$1" "${2:-1}"
}

# ---------------------------------------------------------------- listings

# tree_listing DIR: one line per entry, sorted by path:
#   PATH<TAB>TYPE mode= uid= gid= [nlink=] [size=] [sha256=|target=|rdev=] [xattr...] [mtime=] [hl=]
# Env: TREE_MTIME=0 drops mtimes; TREE_MTIME_CUTOFF=EPOCH prints "new" for
# mtimes at or after it; TREE_XATTR_RE selects xattr names (default user.* and
# POSIX ACLs); TREE_DIR_NLINK=1 adds nlink for directories. Non-printable bytes
# in names are escaped as \xHH. hl= names the first path sharing the inode.
# Errors become ERR:<errno name> fields rather than aborting.
tree_listing() {
	timeout -k 5 "${TREE_TIMEOUT:-300}" python3 - "$1" <<'EOF'
import os, sys, stat, hashlib, re, errno
root = os.fsencode(sys.argv[1])
env = os.environ
want_mtime = env.get("TREE_MTIME", "1") != "0"
cutoff = int(float(env.get("TREE_MTIME_CUTOFF", "0") or 0) * 1e9)
xre = re.compile(env.get("TREE_XATTR_RE", r"^(user\.|system\.posix_acl_)").encode())
dir_nlink = env.get("TREE_DIR_NLINK", "0") == "1"

def esc(b):
    out = []
    for c in b:
        if c == 0x5C:
            out.append("\\\\")
        elif 0x20 <= c < 0x7F:
            out.append(chr(c))
        else:
            out.append("\\x%02x" % c)
    return "".join(out)

def ename(e):
    return "ERR:" + errno.errorcode.get(e.errno, str(e.errno))

lines = {}
inodes = {}
sys.setrecursionlimit(100000)

def entry(name, label):
    """Describe entry NAME (relative to the cwd). Returns (st, line) or (None, line)."""
    try:
        st = os.lstat(name)
    except OSError as e:
        return None, label + "\t" + ename(e)
    m = st.st_mode
    t = ("d" if stat.S_ISDIR(m) else "f" if stat.S_ISREG(m) else "l" if stat.S_ISLNK(m)
         else "c" if stat.S_ISCHR(m) else "b" if stat.S_ISBLK(m) else "p" if stat.S_ISFIFO(m)
         else "s" if stat.S_ISSOCK(m) else "?")
    f = [t, "mode=%04o" % stat.S_IMODE(m), "uid=%d" % st.st_uid, "gid=%d" % st.st_gid]
    if t != "d" or dir_nlink:
        f.append("nlink=%d" % st.st_nlink)
    if t != "d":
        f.append("size=%d" % st.st_size)
    if t == "f":
        try:
            h = hashlib.sha256()
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            with os.fdopen(fd, "rb") as fh:
                while True:
                    b = fh.read(1 << 20)
                    if not b:
                        break
                    h.update(b)
            f.append("sha256=" + h.hexdigest()[:16])
        except OSError as e:
            f.append("sha256=" + ename(e))
    elif t == "l":
        try:
            f.append("target=" + esc(os.readlink(name)))
        except OSError as e:
            f.append("target=" + ename(e))
    elif t in "cb":
        f.append("rdev=%d:%d" % (os.major(st.st_rdev), os.minor(st.st_rdev)))
    try:
        xs = sorted(x for x in os.listxattr(name, follow_symlinks=False) if xre.search(os.fsencode(x)))
        for x in xs:
            try:
                v = os.getxattr(name, x, follow_symlinks=False)
                f.append("xattr:%s=%s" % (x, v.hex()))
            except OSError as e:
                f.append("xattr:%s=%s" % (x, ename(e)))
    except OSError as e:
        if e.errno not in (errno.ENOTSUP,):
            f.append("xattrs=" + ename(e))
    if want_mtime:
        if cutoff and st.st_mtime_ns >= cutoff:
            f.append("mtime=new")
        else:
            f.append("mtime=%d.%09d" % divmod(st.st_mtime_ns, 10**9))
    if t != "d":
        inodes.setdefault((st.st_dev, st.st_ino), []).append(label)
    return st, label + "\t" + " ".join(f)

def walk(rel):
    """cwd is the directory REL (relative to the root); list its children.
    fd-relative all the way down, so trees deeper than PATH_MAX list fine."""
    label_of = lambda k: esc(rel + b"/" + k) if rel else esc(k)
    try:
        kids = os.listdir(b".")
    except OSError as e:
        return " readdir=" + ename(e)
    extra = ""
    if len(set(kids)) != len(kids):
        extra = " DUPLICATE-NAMES=" + ",".join(sorted(set(esc(k) for k in kids if kids.count(k) > 1)))
    here = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        for k in kids:
            label = label_of(k)
            st, line = entry(k, label)
            if st is not None and stat.S_ISDIR(st.st_mode):
                try:
                    fd = os.open(k, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
                    os.fchdir(fd)
                    os.close(fd)
                    line += walk(rel + b"/" + k if rel else k)
                except OSError as e:
                    line += " readdir=" + ename(e)
                finally:
                    os.fchdir(here)
            lines[label] = line
    finally:
        os.close(here)
    return extra

os.chdir(root)
st, line = entry(".", ".")
if st is not None and stat.S_ISDIR(st.st_mode):
    line += walk(b"")
lines["."] = line
for names in inodes.values():
    if len(names) > 1:
        first = min(names)
        for n in names:
            lines[n] += " hl=" + first
for k in sorted(lines):
    print(lines[k])
EOF
}

# upper_listing DIR: raw listing of a layer directory with every xattr
# (trusted.overlay.* included) and no times, for inspecting what was written.
upper_listing() {
	TREE_MTIME=0 TREE_XATTR_RE='.' tree_listing "$1"
}

# diff_listings LABEL_A FILE_A LABEL_B FILE_B: print a unified diff (first
# CMP_DIFF_LINES lines), fail if any.
diff_listings() {
	local out n max=${CMP_DIFF_LINES:-60}
	out=$(diff -u --label "$1" --label "$3" "$2" "$4") && return 0
	n=$(printf '%s\n' "$out" | wc -l)
	printf '%s\n' "$out" | awk -v max="$max" 'NR <= max'
	[ "$n" -le "$max" ] || echo "... ($((n - max)) more diff lines)"
	return 1
}

# ---------------------------------------------------------------- ops

# step CMD...: run one operation of a change sequence and log it with its exit
# status and output, so that kernel and stratafs transcripts can be diffed.
step() {
	local out rc
	# (no errexit trip when called from a test's subshell)
	out=$("$@" 2>&1) && rc=0 || rc=$?
	printf '[%s] rc=%d\n' "$*" "$rc"
	[ -z "$out" ] || printf '%s\n' "$out"
	return 0
}

# run_ops DIR FUNC: run shell function FUNC with cwd DIR, bounded by
# CMP_OPS_TIMEOUT seconds (a hung server must fail the test, not hang the
# suite); DIR is replaced by MNT in the output.
run_ops() {
	local dir=$1 fn=$2 rc
	# shellcheck disable=SC2046
	export -f $(compgen -A function)
	timeout -k 5 "${CMP_OPS_TIMEOUT:-600}" bash -c 'cd "$1" && "$2"' _ "$dir" "$fn" 2>&1 | sed "s|$dir|MNT|g"
	rc=${PIPESTATUS[0]}
	[ "$rc" = 0 ] || echo "OPS EXIT $rc"
}

# ---------------------------------------------------------------- kernel comparison

# compare_with_kernel BUILD_FN [OPS_FN] [PREP_FN]
#
# BUILD_FN DIR creates a layer set in DIR (mk_layers DIR N, then content in
# DIR/l1.., optionally DIR/upper); it is called twice, for k/ (the kernel) and
# s/ (stratafs), and must be deterministic. Times are then fixed per layer.
# PREP_FN LAYER (e.g. to_kernel_forms) is applied to each layer of k/ before
# mounting, and to s/ before the kernel mounts it.
#
# Phases, each one a diff that must be empty:
#   before  merged views of both, before any change
#   ops     transcript of OPS_FN (run with cwd = mount point) on both
#   after   merged views after OPS_FN
#   s-on-s  stratafs remounted on its own upper vs kernel view
#   k-on-s  the stratafs-written upper, mounted by the kernel, vs kernel view
#   s-on-k  the kernel-written upper, mounted by stratafs, vs kernel view
# CMP_CROSS=0 skips the last three. All phases run; failures are listed at the end.
# Leaves $CMP (the work dir) for further checks.
compare_with_kernel() {
	local build=$1 ops=${2:-} prep=${3:-} l failed=() cutoff k s
	need_kernel_overlay
	CMP=$BATS_TEST_TMPDIR/cmp
	rm -rf "$CMP"
	k=$CMP/k
	s=$CMP/s
	# built twice rather than copied: cp -a cannot copy trees deeper than
	# PATH_MAX (build functions must be deterministic: see prand)
	mkdir -p "$k" "$s"
	"$build" "$k" || { echo "layer build failed" >&2; return 1; }
	"$build" "$s" || { echo "layer build failed" >&2; return 1; }
	set_layer_times "$k"
	set_layer_times "$s"
	mkdir -p "$k/mnt" "$s/mnt"
	if [ -n "$prep" ]; then
		for l in "$k"/l* "$k/upper"; do "$prep" "$l"; done
	fi
	mount_kernel "$(lowers_of "$k")" "$k/upper" "$k/work" "$k/mnt" || return 1
	mount_strata "$(lowers_of "$s")" "$s/upper" "$s/work" "$s/mnt" || return 1
	cutoff=$(($(date +%s) - 2))
	export TREE_MTIME_CUTOFF=$cutoff

	tree_listing "$k/mnt" >"$CMP/k.before"
	tree_listing "$s/mnt" >"$CMP/s.before"
	diff_listings kernel "$CMP/k.before" stratafs "$CMP/s.before" || failed+=(before)
	cp "$CMP/k.before" "$CMP/k.after"

	if [ -n "$ops" ]; then
		run_ops "$k/mnt" "$ops" >"$CMP/k.ops"
		run_ops "$s/mnt" "$ops" >"$CMP/s.ops"
		diff_listings kernel-ops "$CMP/k.ops" stratafs-ops "$CMP/s.ops" || failed+=(ops)
		tree_listing "$k/mnt" >"$CMP/k.after"
		tree_listing "$s/mnt" >"$CMP/s.after"
		diff_listings kernel "$CMP/k.after" stratafs "$CMP/s.after" || failed+=(after)
	fi
	umount_kernel "$k/mnt" || failed+=(umount-kernel)
	umount_strata "$s/mnt" || failed+=(umount-stratafs)

	if [ "${CMP_CROSS:-1}" = 1 ]; then
		if mount_strata "$(lowers_of "$s")" "$s/upper" "$s/work" "$s/mnt"; then
			tree_listing "$s/mnt" >"$CMP/s-on-s"
			umount_strata "$s/mnt" || failed+=(umount-stratafs-3)
			diff_listings kernel "$CMP/k.after" stratafs-remounted "$CMP/s-on-s" || failed+=(s-on-s)
		else
			failed+=(s-on-s-mount)
		fi
		if [ -n "$prep" ]; then
			for l in "$s"/l* "$s/upper"; do "$prep" "$l"; done
		fi
		if mount_kernel "$(lowers_of "$s")" "$s/upper" "$s/work" "$s/mnt"; then
			tree_listing "$s/mnt" >"$CMP/k-on-s"
			umount_kernel "$s/mnt"
			diff_listings kernel "$CMP/k.after" kernel-on-stratafs-upper "$CMP/k-on-s" || failed+=(k-on-s)
		else
			failed+=(k-on-s-mount)
		fi
		if mount_strata "$(lowers_of "$k")" "$k/upper" "$k/work" "$k/mnt"; then
			tree_listing "$k/mnt" >"$CMP/s-on-k"
			umount_strata "$k/mnt" || failed+=(umount-stratafs-2)
			diff_listings kernel "$CMP/k.after" stratafs-on-kernel-upper "$CMP/s-on-k" || failed+=(s-on-k)
		else
			failed+=(s-on-k-mount)
		fi
	fi
	unset TREE_MTIME_CUTOFF
	if [ ${#failed[@]} -gt 0 ]; then
		echo "compare_with_kernel: differences in: ${failed[*]}" >&2
		if [ -n "$ops" ]; then
			echo "--- ops transcript (kernel):" >&2
			cat "$CMP/k.ops" >&2
		fi
		return 1
	fi
	return 0
}

# both_mounts BUILD_FN [PREP_FN]: build a layer set as compare_with_kernel does
# and leave the kernel mount at $K and the stratafs mount at $S (unmounted by
# teardown), for tests that compare specific results rather than listings.
both_mounts() {
	local build=$1 prep=${2:-} l
	need_kernel_overlay
	CMP=$BATS_TEST_TMPDIR/cmp
	rm -rf "$CMP"
	mkdir -p "$CMP/k" "$CMP/s"
	"$build" "$CMP/k" || return 1
	"$build" "$CMP/s" || return 1
	set_layer_times "$CMP/k"
	set_layer_times "$CMP/s"
	mkdir -p "$CMP/k/mnt" "$CMP/s/mnt"
	if [ -n "$prep" ]; then
		for l in "$CMP/k"/l* "$CMP/k/upper"; do "$prep" "$l"; done
	fi
	mount_kernel "$(lowers_of "$CMP/k")" "$CMP/k/upper" "$CMP/k/work" "$CMP/k/mnt" || return 1
	mount_strata "$(lowers_of "$CMP/s")" "$CMP/s/upper" "$CMP/s/work" "$CMP/s/mnt" || return 1
	K=$CMP/k/mnt
	S=$CMP/s/mnt
}

# same_in_both CMD...: run CMD (a shell snippet using relative paths) with cwd in
# each mount, fail with a diff unless status and output are identical.
same_in_both() {
	local ko so
	ko=$(cd "$K" && bash -c "$*" 2>&1; echo "rc=$?")
	so=$(cd "$S" && bash -c "$*" 2>&1; echo "rc=$?")
	ko=${ko//$K/MNT}
	so=${so//$S/MNT}
	if [ "$ko" != "$so" ]; then
		echo "'$*' differs:" >&2
		diff -u --label kernel --label stratafs <(echo "$ko") <(echo "$so") >&2
		return 1
	fi
	printf '%s\n' "$ko"
}
