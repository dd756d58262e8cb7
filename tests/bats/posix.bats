#!/usr/bin/env bats
# POSIX operations through the mount, one area per test. Where the kernel's
# overlayfs defines the answer, the same operations run on both and their
# transcripts (results and errno names) and final trees must match.

load helpers

setup() {
	common_setup
	need_python
}

teardown() {
	common_teardown
}

# Python prelude for ops: t(label, fn, *args) prints "label ok [result]" or
# "label ERRNO"; renameat2 via ctypes (coreutils 9.1 has no mv --exchange).
export PY_PRELUDE='
import os, sys, errno, stat, ctypes, socket, fcntl, mmap, time
def t(label, f, *a, **k):
    try:
        r = f(*a, **k)
        print(label, "ok", "" if r is None else r)
        return r
    except OSError as e:
        print(label, errno.errorcode.get(e.errno, e.errno))
libc = ctypes.CDLL(None, use_errno=True)
RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT = 1, 2, 4
def renameat2(a, b, flags):
    if libc.renameat2(-100, os.fsencode(a), -100, os.fsencode(b), flags) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
def read(p):
    with open(p, "rb") as f:
        return f.read()
'

# py CODE [ARGS]: run CODE after the prelude
py() {
	local code=$1
	shift
	python3 -c "$PY_PRELUDE
$code" "$@"
}

# asuser CMD...: run as nobody (uid/gid 65534), no supplementary groups
asuser() {
	if declare -F "$1" >/dev/null; then # a shell function (exported by run_ops)
		setpriv --reuid 65534 --regid 65534 --clear-groups -- bash -c '"$@"' _ "$@"
	else
		setpriv --reuid 65534 --regid 65534 --clear-groups -- "$@"
	fi
}

# a small two-layer stack with an upper, used by most tests
build_basic() {
	local d=$1
	mk_layers "$d" 2
	mkdir -p "$d"/l2/dir/sub "$d"/l2/merged "$d"/l1/merged "$d"/l2/empty "$d"/l2/pub "$d"/upper/updir
	echo lower2 >"$d"/l2/file
	echo lower-dir >"$d"/l2/dir/f
	echo sub >"$d"/l2/dir/sub/g
	echo m2 >"$d"/l2/merged/from2
	echo m1 >"$d"/l1/merged/from1
	echo top >"$d"/l1/topfile
	echo up >"$d"/upper/upfile
	echo up >"$d"/upper/updir/u
	ln -s file "$d"/l2/symlink
	ln -s /nonexistent/target "$d"/l2/dangling
	mkfifo "$d"/l2/fifo
	truncate -s 8M "$d"/l2/sparse
	echo tail >>"$d"/l2/sparse
	printf 'x%.0s' {1..10000} >"$d"/l2/big
	chmod 1777 "$d"/l2/pub
	echo secret >"$d"/l2/secret
	chmod 0600 "$d"/l2/secret
	chmod 0666 "$d"/l2/file
	echo a >"$d"/l2/pub/others
	chown 1000:1000 "$d"/l2/pub/others
	whiteout "$d"/l1/gone
	echo gone >"$d"/l2/gone
}

ops_setattr() {
	step chmod 0704 file
	step chmod 0700 dir
	step chmod 0600 symlink
	step chmod 0777 nonexistent
	step chown 12:34 file dir/f
	step chown -h 56:78 symlink dangling
	step chown 9:9 fifo
	step truncate -s 5 big
	step truncate -s 100000 dir/f
	step truncate -s 0 topfile
	step truncate -s 3 dir
	step truncate -s 1 symlink
	step touch -d '2001-02-03 04:05:06.789' merged dir/sub/g
	step touch -m -d '@123456789.5' upfile
	step touch -a -d '@1' upfile
	step touch -h -d '@987654321' dangling
	step py 't("utime-now", os.utime, "merged/from2")
t("utime-ns", os.utime, "topfile", ns=(1, 2000000003))
t("utime-omit", os.utime, "file", ns=(5, 6))
print(os.stat("topfile").st_mtime_ns, os.stat("file").st_mtime_ns)
t("ftruncate-ro", lambda: os.ftruncate(os.open("dir/sub/g", os.O_RDONLY), 1))
fd = os.open("dir/sub/g", os.O_RDWR); os.ftruncate(fd, 2); print(os.fstat(fd).st_size)
t("truncate-neg", os.truncate, "file", -1)'
	step stat -c '%n %a %u %g %s' file dir symlink fifo big dir/f topfile upfile
}

@test "setattr: chmod, chown, truncate, utimens (same as the kernel)" {
	compare_with_kernel build_basic ops_setattr
}

ops_symlinks() {
	step readlink symlink dangling
	step cat symlink
	step cat dangling
	step ln -s "$(printf 't%.0s' {1..4095})" maxtarget
	step ln -s "$(printf 't%.0s' {1..4096})" toolong
	step ln -s '' empty-target
	step ln -s dir dirlink
	step ls dirlink/
	step ln -s file symlink
	step py 't("readlink", os.readlink, "maxtarget")
print(len(os.readlink("maxtarget")))
t("readlink-file", os.readlink, "file")
t("loop", os.symlink, "loop", "loop")
t("open-loop", os.open, "loop", os.O_RDONLY)
t("nofollow", os.open, "symlink", os.O_RDONLY | os.O_NOFOLLOW)'
	step mv symlink dir/moved-link
	step cat dir/moved-link
	step rm dangling
}

@test "symlink and readlink (same as the kernel)" {
	compare_with_kernel build_basic ops_symlinks
}

ops_mknod() {
	step mkfifo newfifo
	step mkfifo -m 0600 fifo600
	step mknod chr c 1 3
	step mknod blk b 7 0
	step mknod fifo2 p
	step mknod whiteout-attempt c 0 0
	step mknod file c 0 0
	step mknod gone c 0 0
	step py 't("sock", lambda: socket.socket(socket.AF_UNIX).bind("sock"))
print(stat.S_ISSOCK(os.lstat("sock").st_mode))
t("mknod-sock", os.mknod, "sock2", 0o644 | stat.S_IFSOCK)
t("mknod-reg", os.mknod, "reg", 0o644 | stat.S_IFREG)
t("mknod-exist", os.mknod, "file", 0o644 | stat.S_IFIFO)'
	step stat -c '%n %F %a %t:%T' newfifo fifo600 chr blk fifo2 sock sock2 reg
	step ls -A
	step cat file
}

@test "mknod: fifo, socket, devices; mknod c 0 0 is refused and changes nothing (same as the kernel)" {
	compare_with_kernel build_basic ops_mknod
}

@test "a non-root user's mknod c 0 0 fails with EPERM and leaves the directory intact" {
	ops() {
		step asuser mknod pub/wh c 0 0
		step asuser mknod pub/others c 0 0
		step asuser mkfifo pub/userfifo
		step asuser py 't("mknod00", os.mknod, "pub/wh2", 0o600 | stat.S_IFCHR, os.makedev(0, 0))'
		step ls -A pub
		step cat pub/others
	}
	compare_with_kernel build_basic ops
}

ops_dirops() {
	step mkdir newdir
	step mkdir newdir
	step mkdir file
	step mkdir gone
	step mkdir -m 0700 private
	step mkdir topfile/x
	step rmdir merged
	step rmdir dir
	step rmdir empty
	step rmdir updir
	step rmdir file
	step rmdir symlink
	step rm dir
	step rm file topfile upfile
	step rm nonexistent
	step rm fifo
	step sh -c 'rm merged/from1 merged/from2 && rmdir merged'
	step sh -c 'rm -r dir && mkdir dir && ls -A dir'
	step py 't("rmdir-dot", os.rmdir, "newdir/.")
t("unlink-dir", os.unlink, "newdir")
t("rmdir-notdir", os.rmdir, "upfile")
t("mkdir-exist-lower", os.mkdir, "big")
t("mkdir-under-file", os.mkdir, "big/x")
t("lookup-under-file", os.stat, "big/x")'
	step ls -A
}

@test "mkdir, rmdir, unlink incl. error cases (same as the kernel)" {
	compare_with_kernel build_basic ops_dirops
}

ops_rename() {
	step py '
t("plain-lower", os.rename, "file", "file-renamed")
t("over-lower", os.rename, "topfile", "big")
t("noreplace-lower-target", renameat2, "upfile", "dir/f", RENAME_NOREPLACE)
t("noreplace-whiteout-target", renameat2, "upfile", "gone", RENAME_NOREPLACE)
t("noreplace-free", renameat2, "gone", "gone2", RENAME_NOREPLACE)
t("noreplace-same", renameat2, "big", "big", RENAME_NOREPLACE)
t("exchange-files", renameat2, "big", "symlink", RENAME_EXCHANGE)
t("show-big", os.readlink, "big")
t("show-symlink", lambda: read("symlink")[:5])
t("exchange-dirs", renameat2, "dir", "merged", RENAME_EXCHANGE)
t("show-dirs", lambda: (sorted(os.listdir("dir")), sorted(os.listdir("merged"))))
t("exchange-file-dir", renameat2, "gone", "updir", RENAME_EXCHANGE)
t("exchange-missing", renameat2, "nonexistent", "big", RENAME_EXCHANGE)
t("exchange-lower-upper", renameat2, "empty", "updir", RENAME_EXCHANGE)
t("show-exchanged", lambda: (sorted(os.listdir("empty")), sorted(os.listdir("updir"))))
t("whiteout-flag", renameat2, "fifo", "fifo2", RENAME_WHITEOUT)
t("both-flags", renameat2, "fifo", "fifo2", RENAME_EXCHANGE | RENAME_NOREPLACE)
t("dir-over-nonempty", os.rename, "empty", "merged")
t("dir-over-file", os.rename, "empty", "big")
t("file-over-dir", os.rename, "big", "empty")
t("dir-into-itself", os.rename, "merged", "merged/sub")
t("rename-dot", os.rename, "merged/.", "x")
t("dir-over-empty-lower-dir", os.rename, "merged", "pub/sub-not-there/x")
os.mkdir("emptyupper")
t("dir-over-empty-dir", os.rename, "dir", "emptyupper")
t("lower-dir-rename", os.rename, "emptyupper", "renamed-lower-dir")
t("show-renamed", lambda: sorted(os.listdir("renamed-lower-dir")))
'
	step ls -A
}

@test "rename incl. RENAME_NOREPLACE and RENAME_EXCHANGE (same as the kernel)" {
	compare_with_kernel build_basic ops_rename
}

ops_link() {
	step ln file link-to-lower
	step ln upfile link-to-upper
	step ln symlink link-to-symlink
	step ln fifo link-to-fifo
	step ln dir link-to-dir
	step ln nonexistent x
	step ln file topfile
	step ln file gone
	step sh -c 'echo via-link >> link-to-lower; cat file'
	step stat -c '%n %h' file link-to-lower upfile link-to-upper symlink link-to-symlink fifo link-to-fifo
	step rm file
	step stat -c '%n %h' link-to-lower
	step cat link-to-lower
}

@test "link (same as the kernel)" {
	compare_with_kernel build_basic ops_link
}

ops_io() {
	step py '
fd = os.open("new", os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
os.write(fd, b"hello world"); os.fsync(fd); os.fdatasync(fd)
print(os.pread(fd, 5, 6)); os.pwrite(fd, b"X", 20); print(os.fstat(fd).st_size, read("new"))
os.close(fd)
t("excl-lower", os.open, "file", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
t("excl-whiteout", lambda: os.close(os.open("gone", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)))
fd = os.open("big", os.O_WRONLY | os.O_APPEND); os.write(fd, b"APPENDED"); os.close(fd)
print(len(read("big")), read("big")[-10:])
fd = os.open("dir/f", os.O_WRONLY | os.O_TRUNC); os.close(fd); print(read("dir/f"))
fd = os.open("topfile", os.O_RDWR); os.lseek(fd, 2, 0); os.write(fd, b"P"); os.close(fd); print(read("topfile"))
t("write-ro-fd", lambda: os.write(os.open("upfile", os.O_RDONLY), b"x"))
t("open-dir-wr", os.open, "dir", os.O_WRONLY)
t("open-dir-rd", lambda: os.close(os.open("dir", os.O_RDONLY)))
t("notdir", os.open, "file/x", os.O_RDONLY)
t("directory-flag", os.open, "file", os.O_RDONLY | os.O_DIRECTORY)
t("creat-in-lower-dir", lambda: os.close(os.open("dir/sub/new", os.O_CREAT | os.O_WRONLY, 0o640)))
fd = os.open("sparse", os.O_RDWR); os.pwrite(fd, b"mid", 4 << 20); os.fsync(fd); os.close(fd)
d = read("sparse"); print(len(d), d.count(b"\0"), d[(4 << 20):(4 << 20) + 3])
# mmap write on a lower file
fd = os.open("file", os.O_RDWR); m = mmap.mmap(fd, 0); m[0:3] = b"MAP"; m.flush(); m.close(); os.close(fd)
print(read("file"))
fd = os.open("updir/u", os.O_RDWR); os.write(fd, b"ab"); os.fsync(fd); os.close(fd); print(read("updir/u"))
t("fsync-dir", lambda: os.fsync(os.open("dir", os.O_RDONLY)))
t("syncfs", lambda: libc.syncfs(os.open(".", os.O_RDONLY)))
'
}

@test "open, create, read, write, append, O_TRUNC, O_EXCL, mmap, fsync (same as the kernel)" {
	compare_with_kernel build_basic ops_io
}

@test "fstat of an unlinked open file reports nlink 0 (lower, upper and new files)" {
	ops() {
		step py '
for p in ("file", "upfile", "dir/f"):
    fd = os.open(p, os.O_RDONLY); os.unlink(p); print(p, os.fstat(fd).st_nlink, os.read(fd, 3))
fd = os.open("created", os.O_CREAT | os.O_RDWR, 0o644); os.write(fd, b"abc"); os.unlink("created")
print("created", os.fstat(fd).st_nlink, os.pread(fd, 3, 0))
os.link("topfile", "tl"); fd = os.open("tl", os.O_RDONLY); os.unlink("tl")
print("tl", os.fstat(fd).st_nlink); os.unlink("topfile"); print("tl", os.fstat(fd).st_nlink)
'
	}
	compare_with_kernel build_basic ops
}

@test "statfs reports FUSE magic 0x65735546 and the upper filesystem's size" {
	need_real_stratafs
	rm -rf "$T/w"
	mkdir -p "$T/w"
	build_basic "$T/w"
	mount_strata "$(lowers_of "$T/w")" "$T/w/upper" "$T/w/work" "$T/w/mnt"
	run stat -f -c %t "$T/w/mnt"
	assert_output 65735546
	# total bytes as the upper's filesystem (the kernel's overlayfs does the same)
	assert_equal "$(($(stat -f -c '%b*%S' "$T/w/mnt")))" "$(($(stat -f -c '%b*%S' "$T/w/upper")))"
	assert_equal "$(stat -f -c '%l' "$T/w/mnt")" 255
	run python3 -c 'import os,sys; s = os.statvfs(sys.argv[1]); print(s.f_namemax, s.f_bsize > 0, s.f_files > 0)' "$T/w/mnt"
	assert_output "255 True True"
}

ops_xattr() {
	step py '
t("set-lower", os.setxattr, "file", "user.a", b"1")
t("get", os.getxattr, "file", "user.a")
t("create-exists", os.setxattr, "file", "user.a", b"2", os.XATTR_CREATE)
t("replace-missing", os.setxattr, "file", "user.b", b"2", os.XATTR_REPLACE)
t("replace", os.setxattr, "file", "user.a", b"3", os.XATTR_REPLACE)
t("get-missing", os.getxattr, "file", "user.zz")
t("remove-missing", os.removexattr, "file", "user.zz")
t("remove-lower-only", os.removexattr, "dir/sub", "user.d")
t("list-lower", lambda: sorted(os.listxattr("dir/f")))
t("get-lower", os.getxattr, "dir/f", "user.bin")
t("big", os.setxattr, "upfile", "user.big", b"v" * 3000)
t("get-big", lambda: len(os.getxattr("upfile", "user.big")))
t("too-big", os.setxattr, "upfile", "user.huge", b"v" * 70000)
t("long-name", os.setxattr, "upfile", "user." + "n" * 250, b"1")
t("too-long-name", os.setxattr, "upfile", "user." + "n" * 251, b"1")
t("empty-value", os.setxattr, "upfile", "user.empty", b"")
t("get-empty", os.getxattr, "upfile", "user.empty")
t("symlink-user", os.setxattr, "symlink", "user.x", b"1", follow_symlinks=False)
t("symlink-follow", os.setxattr, "symlink", "user.viasym", b"1")
t("fifo-user", os.setxattr, "fifo", "user.x", b"1", follow_symlinks=False)
t("trusted", os.setxattr, "file", "trusted.t", b"t")
t("get-trusted", os.getxattr, "file", "trusted.t")
t("security", os.setxattr, "file", "security.s", b"s")
t("bad-ns", os.setxattr, "file", "bogus.x", b"1")
t("dir", os.setxattr, "merged", "user.dir", b"d")
t("list-file", lambda: sorted(os.listxattr("file")))
t("list-dir", lambda: sorted(os.listxattr("merged")))
t("list-whiteout", os.listxattr, "gone")
fd = os.open("topfile", os.O_RDONLY)
t("fset", os.setxattr, fd, "user.f", b"f")
t("fget", os.getxattr, fd, "user.f")
t("flist", lambda: sorted(os.listxattr(fd)))
t("fremove", os.removexattr, fd, "user.f")
t("list-size-probe", lambda: libc.listxattr(b"file", None, 0) > 0)
'
	step getfattr -d -m '^user\.' --absolute-names file dir/f dir/sub merged upfile
}

build_xattr() {
	build_basic "$1"
	setfattr -n user.bin -v 0x0001ff "$1"/l2/dir/f
	setfattr -n user.str -v str "$1"/l2/dir/f
	setfattr -n user.d -v d "$1"/l2/dir/sub
}

@test "xattrs: get, set (CREATE/REPLACE), list, remove, limits (same as the kernel)" {
	compare_with_kernel build_xattr ops_xattr
}

ops_acl() {
	step setfacl -m u:1234:rw,g:4321:r file
	step getfacl -c -n file
	step setfacl -d -m u:1234:rwx,o::- dir
	step getfacl -c -n dir
	step sh -c 'umask 022; touch dir/inherits; mkdir dir/subinherits'
	step getfacl -c -n dir/inherits dir/subinherits
	step setfacl -b file
	step getfacl -c -n file
	step setfacl -m u:65534:r secret
	step asuser cat secret
	step setfacl -x u:65534 secret
	step asuser cat secret
	step setfacl -m m::--- dir/f
	step getfacl -c -n dir/f
	step getfacl -c -n acl-lower
	step asuser cat acl-lower
	step chmod 0640 acl-lower
	step getfacl -c -n acl-lower
}

build_acl() {
	build_basic "$1"
	echo acl >"$1"/l2/acl-lower
	chmod 0600 "$1"/l2/acl-lower
	setfacl -m u:65534:r "$1"/l2/acl-lower
}

@test "POSIX ACLs: setfacl, getfacl, default ACLs, access checks (same as the kernel)" {
	compare_with_kernel build_acl ops_acl
}

ops_fallocate() {
	step fallocate -l 1M newfile
	step fallocate -l 2M file
	step fallocate -n -o 0 -l 4M big
	step fallocate -p -o 0 -l 4096 big
	step fallocate -d sparse
	step fallocate -z -o 0 -l 100 topfile
	step stat -c '%n %s' newfile file big sparse topfile
	step py '
print(os.stat("newfile").st_blocks >= 2048, os.stat("big").st_blocks >= 8192)
print(read("big")[:4096].count(b"\0"), read("big")[4096:4100])
t("fallocate-dir", os.posix_fallocate, os.open("dir", os.O_RDONLY), 0, 10)
'
}

@test "fallocate incl. keep-size, punch-hole, zero-range (same as the kernel)" {
	compare_with_kernel build_basic ops_fallocate
}

ops_seek() {
	step py '
def holes(p):
    fd = os.open(p, os.O_RDONLY)
    out = []
    for off in (0, 4096, 1 << 20, 8 << 20):
        for w, n in ((os.SEEK_DATA, "D"), (os.SEEK_HOLE, "H")):
            try:
                out.append("%s%d=%d" % (n, off, os.lseek(fd, off, w)))
            except OSError as e:
                out.append("%s%d=%s" % (n, off, errno.errorcode[e.errno]))
    os.close(fd)
    return " ".join(out)
print("lower", holes("sparse"))
fd = os.open("newsparse", os.O_CREAT | os.O_RDWR, 0o644); os.pwrite(fd, b"x", 1 << 20); os.close(fd)
print("new", holes("newsparse"))
fd = os.open("sparse", os.O_RDWR); os.pwrite(fd, b"y", 4096 * 10); os.close(fd)
print("copied-up", holes("sparse"))
print("small", holes("file"))
'
}

@test "lseek SEEK_DATA/SEEK_HOLE on lower, copied-up and new files (same as the kernel)" {
	compare_with_kernel build_basic ops_seek
}

ops_cfr() {
	step py '
src = os.open("big", os.O_RDONLY)
dst = os.open("copy", os.O_CREAT | os.O_WRONLY, 0o644)
n = 0
while True:
    c = os.copy_file_range(src, dst, 65536)
    if c == 0: break
    n += c
print("copied", n, read("copy") == read("big"))
dst = os.open("topfile", os.O_WRONLY)
print(os.copy_file_range(src, dst, 5, 0, 2), read("topfile"))
dst = os.open("dir/f", os.O_WRONLY)
print(os.copy_file_range(src, dst, 3, 9990, 100), len(read("dir/f")))
t("to-ro-fd", os.copy_file_range, src, os.open("upfile", os.O_RDONLY), 1)
t("same-file-overlap", os.copy_file_range, src, src, 10, 0, 5)
'
}

@test "copy_file_range within the mount, into lower and upper files (same as the kernel)" {
	compare_with_kernel build_basic ops_cfr
}

ops_locks() {
	step py '
a = os.open("file", os.O_RDWR); b = os.open("file", os.O_RDWR)
fcntl.flock(a, fcntl.LOCK_EX)
t("flock-conflict", fcntl.flock, b, fcntl.LOCK_EX | fcntl.LOCK_NB)
fcntl.flock(a, fcntl.LOCK_UN)
t("flock-free", fcntl.flock, b, fcntl.LOCK_EX | fcntl.LOCK_NB)
t("flock-shared", fcntl.flock, a, fcntl.LOCK_SH | fcntl.LOCK_NB)
fcntl.flock(b, fcntl.LOCK_UN)
t("flock-shared2", fcntl.flock, a, fcntl.LOCK_SH | fcntl.LOCK_NB)
fcntl.flock(a, fcntl.LOCK_UN)
# POSIX record locks: conflict seen from another process
fcntl.lockf(a, fcntl.LOCK_EX, 10, 0)
sys.stdout.flush()
pid = os.fork()
if pid == 0:
    c = os.open("file", os.O_RDWR)
    t("lockf-conflict", fcntl.lockf, c, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 0)
    t("lockf-other-range", fcntl.lockf, c, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 20)
    sys.stdout.flush(); os._exit(0)
os.waitpid(pid, 0)
'
	step flock -n upfile true
	step sh -c 'flock -n upfile sh -c "flock -n upfile true; echo inner=\$?"'
}

@test "flock and POSIX locks (same as the kernel)" {
	compare_with_kernel build_basic ops_locks
}

ops_names() {
	local n255 n256
	n255=$(printf 'a%.0s' {1..255})
	n256=$(printf 'a%.0s' {1..256})
	step touch "$n255"
	step touch "$n256"
	step mkdir "$n256"
	step ln -s x "$n256"
	step ln file "$n256"
	step mv file "$n256"
	step mkfifo "$n256"
	step stat -c %n "$n256"
	step sh -c "ls -d a* | wc -c"
	step py "t('open-256', os.open, '$n256', os.O_RDONLY)
t('creat-256', os.open, '$n256', os.O_CREAT | os.O_WRONLY)
t('mkdir-256', os.mkdir, 'dir/$n256')
t('rename-256', os.rename, 'upfile', 'dir/$n256')
t('xattr-on-255', os.setxattr, '$n255', 'user.x', b'1')
t('unicode-255-bytes', os.mknod, 'é' * 127 + 'x')
t('unicode-256-bytes', os.mknod, 'é' * 128)"
}

@test "names of 256 bytes give ENAMETOOLONG, 255 work (same as the kernel)" {
	compare_with_kernel build_basic ops_names
}

# mkdeep DIR BYTES: nested 200-byte directory names below DIR down to about
# BYTES of relative path, created fd-relative (deeper than PATH_MAX is fine),
# with a file "leaf" at the bottom.
mkdeep() {
	python3 - "$1" "$2" <<'EOF'
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
n, i = 0, 0
while n < int(sys.argv[2]):
    name = ("%03d" % i) + "d" * 197
    os.mkdir(name, dir_fd=fd)
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
    n += 201
    i += 1
f = os.open("leaf", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd)
os.write(f, b"deep leaf\n")
EOF
}

# deep_ops: walk down with chdir (relative), read/append/create at the bottom
deep_ops() {
	python3 - <<'EOF'
import os, errno
def t(label, f, *a):
    try:
        r = f(*a); print(label, "ok", "" if r is None else r)
    except OSError as e:
        print(label, errno.errorcode[e.errno])
top = os.getcwd()
depth = 0
while True:
    kids = sorted(k for k in os.listdir(".") if k.endswith("d" * 197))
    if not kids:
        break
    os.chdir(kids[0]); depth += 1
print("depth", depth)
t("read", lambda: open("leaf").read())
t("append", lambda: open("leaf", "a").write("more\n"))
t("read2", lambda: open("leaf").read())
t("create", lambda: open("new", "w").write("x"))
t("mkdir", os.mkdir, "newdir")
t("rename", os.rename, "new", "newdir/new2")
t("symlink", os.symlink, "leaf", "sl")
t("readlink", os.readlink, "sl")
t("stat-up", lambda: os.stat("..").st_mode & 0o777)
t("xattr", os.setxattr, "leaf", "user.deep", b"1")
t("getxattr", os.getxattr, "leaf", "user.deep")
t("ls", lambda: sorted(os.listdir(".")))
os.chdir(top)
EOF
}

@test "paths near PATH_MAX work through the mount (lower tree ~4000 bytes, new tree ~8000 bytes)" {
	build_deep() {
		mk_layers "$1" 1
		mkdir "$1"/l1/lowdeep "$1"/l1/lowdeep2
		mkdeep "$1"/l1/lowdeep 3900
		mkdeep "$1"/l1/lowdeep2 6000
	}
	ops() {
		step bash -c 'cd lowdeep && deep_ops'
		step bash -c 'cd lowdeep2 && deep_ops'
		step mkdir newdeep
		step bash -c 'mkdeep newdeep 8000 && cd newdeep && deep_ops'
		step sh -c 'p=$(find lowdeep -name leaf); echo ${#p}; cat "$p"'
		step rm -rf lowdeep2 newdeep
	}
	export -f mkdeep deep_ops
	compare_with_kernel build_deep ops
}

@test "umask is honoured: mkfifo 666 -> 644, mkdir 777 -> 755, create 666 -> 644 (same as the kernel)" {
	ops() {
		step sh -c 'umask 022; mkfifo f1; mkdir d1; touch t1; mknod c1 c 1 3; ln -s x s1; stat -c "%n %a" f1 d1 t1 c1'
		step sh -c 'umask 077; mkfifo f2; mkdir d2; touch t2; mkdir dir/d3; stat -c "%n %a" f2 d2 t2 dir/d3'
		step sh -c 'umask 000; mkfifo f3; mkdir d4; touch t3; stat -c "%n %a" f3 d4 t3'
		step sh -c 'umask 022; mkfifo -m 0666 f4; mkdir -m 0777 d5; stat -c "%n %a" f4 d5'
		step bash -c 'umask 022; py "fd = os.open(\"o1\", os.O_CREAT | os.O_WRONLY, 0o666); print(oct(os.fstat(fd).st_mode))"'
		step sh -c 'setfacl -d -m u::rwx,g::rwx,o::rwx dir && umask 077 && touch dir/acl-file && mkdir dir/acl-dir && stat -c "%n %a" dir/acl-file dir/acl-dir'
	}
	compare_with_kernel build_basic ops
}

@test "umask 022: mkfifo through the mount creates mode 0644 (direct check)" {
	rm -rf "$T/w"
	mkdir -p "$T/w"
	build_basic "$T/w"
	mount_strata "$(lowers_of "$T/w")" "$T/w/upper" "$T/w/work" "$T/w/mnt"
	(umask 022 && mkfifo "$T/w/mnt/fifo-umask" && mkdir "$T/w/mnt/dir-umask")
	assert_equal "$(stat -c %a "$T/w/mnt/fifo-umask")" 644
	assert_equal "$(stat -c %a "$T/w/upper/fifo-umask")" 644
	assert_equal "$(stat -c %a "$T/w/mnt/dir-umask")" 755
}

@test "access checks and files created by a non-root user (same as the kernel)" {
	ops() {
		step asuser cat file
		step asuser cat secret
		step asuser sh -c 'echo x >> file'
		step asuser sh -c 'echo x >> secret'
		step asuser touch pub/mine
		step asuser rm pub/others
		step asuser mkdir pub/mydir
		step asuser mv pub/mine pub/mydir/
		step asuser touch dir/denied
		step asuser ls dir
		step asuser test -w file
		step asuser test -x dir
		step asuser test -w dir
		step asuser chmod 0777 file
		step asuser chown 65534 pub/mydir
		step chmod 4777 pub/mydir/mine
		step asuser sh -c 'echo y >> pub/mydir/mine'
		step stat -c '%n %a %u %g' pub/mine pub/mydir pub/mydir/mine
		step py 'print(os.access("secret", os.R_OK), os.access("fifo", os.W_OK))'
	}
	compare_with_kernel build_basic ops
}

ops_bigdir() {
	step sh -c 'ls -A bigdir | wc -l'
	step sh -c 'ls -A bigdir | LC_ALL=C sort | md5sum'
	step sh -c 'for i in $(seq 1 300); do rm bigdir/l$i; done; for i in $(seq 1 200); do touch bigdir/n$i; done'
	step sh -c 'ls -A bigdir | LC_ALL=C sort | md5sum'
	step py '
# readdir while entries are removed: every surviving name seen once
d = os.scandir("bigdir"); seen = []
for i, e in enumerate(d):
    seen.append(e.name)
    if i == 10:
        for j in range(1000, 1100): os.unlink("bigdir/l%d" % j)
print(len(seen) == len(set(seen)))
print(len(os.listdir("bigdir")))
'
	step sh -c 'rm -rf bigdir && ls -A | grep -c bigdir'
}

@test "readdir of a large merged directory, also while it changes (same as the kernel)" {
	build_bigdir() {
		local i
		mk_layers "$1" 2
		mkdir "$1"/l2/bigdir "$1"/l1/bigdir "$1"/upper/bigdir
		for i in $(seq 1 3000); do : >"$1"/l2/bigdir/l$i; done
		for i in $(seq 1 1000); do : >"$1"/l1/bigdir/m$i; done
		for i in $(seq 1 1000); do : >"$1"/upper/bigdir/u$i; done
		for i in $(seq 2001 2500); do mknod "$1"/l1/bigdir/l$i c 0 0; done
		for i in $(seq 1 100); do mknod "$1"/upper/bigdir/m$i c 0 0; done
	}
	compare_with_kernel build_bigdir ops_bigdir
}

ops_tmpfile() {
	step py '
t("tmpfile", lambda: os.close(os.open("dir", os.O_TMPFILE | os.O_RDWR, 0o600)))
'
}

@test "O_TMPFILE (same as the kernel)" {
	# libfuse gained the tmpfile operation after 3.14, the version Debian 12 ships
	local v
	v=$("$STRATAFS" --version 2>/dev/null | sed -n 's/.*libfuse \([0-9]*\.[0-9]*\).*/\1/p')
	case "$v" in
	3.1[0-6] | 3.[0-9]) skip "stratafs is built against libfuse $v, which has no tmpfile operation: O_TMPFILE gives EOPNOTSUPP" ;;
	esac
	compare_with_kernel build_basic ops_tmpfile
}

ops_misc() {
	step py '
# fifo data through the mount
r = os.open("fifo", os.O_RDONLY | os.O_NONBLOCK); w = os.open("fifo", os.O_WRONLY)
os.write(w, b"through fifo"); print(os.read(r, 100))
'
	step lsattr -d dir
	step lsattr file
	step chattr +A file
	step lsattr file
}

@test "FIFO I/O, FS_IOC_GETFLAGS/SETFLAGS ioctls (same as the kernel)" {
	compare_with_kernel build_basic ops_misc
}

@test "device nodes: nodev by default; with -o dev they open like on the kernel's overlay" {
	need_real_stratafs
	need_kernel_overlay
	rm -rf "$T/w"
	mkdir -p "$T/w" "$T/km"
	mk_layers "$T/w" 2
	mknod "$T/w/l1/null" c 1 3
	mknod -m 0666 "$T/w/l1/zero" c 1 5
	mount_kernel "$(lowers_of "$T/w")" "" "" "$T/km"
	run sh -c "echo x > '$T/km/null' && head -c 4 '$T/km/zero' | od -An -tx1"
	assert_success
	local want=$output
	mount_strata "$(lowers_of "$T/w")" "$T/w/upper" "$T/w/work" "$T/w/mnt"
	run sh -c "echo x > '$T/w/mnt/null'"
	assert_failure
	assert_output --partial "Permission denied"
	umount_strata "$T/w/mnt"
	mount_strata "$(lowers_of "$T/w")" "$T/w/upper" "$T/w/work" "$T/w/mnt" dev,suid
	run sh -c "echo x > '$T/w/mnt/null' && head -c 4 '$T/w/mnt/zero' | od -An -tx1"
	assert_success
	assert_output "$want"
}

# probes that must give an errno (or work), never kill the server
bad_probe() {
	local m=$1
	shift
	local rc
	timeout 20 "$@" >/dev/null 2>&1 && rc=0 || rc=$?
	[ "$rc" != 124 ] || { echo "hung: $*" >&2; return 1; }
	return 0
}

build_bad() {
	local d=$1
	mk_layers "$d" 3
	# a whiteout where a directory is expected by the layers below
	mkdir -p "$d"/l3/wdir/sub "$d"/l3/unread/inner "$d"/l2/wdir/sub "$d"/l3/odd
	echo below >"$d"/l3/wdir/sub/file
	mknod "$d"/l1/wdir c 0 0
	echo mid >"$d"/l2/wdir/sub/file2
	# a file where a directory was, a directory where a file was
	echo file >"$d"/l3/fd
	mkdir "$d"/l2/fd
	mkdir "$d"/l3/df
	echo file >"$d"/l2/df
	# dangling and looping symlinks, absolute symlinks leaving the layer
	ln -s /nonexistent "$d"/l3/dangling
	ln -s loop "$d"/l3/loop
	ln -s ../../../../../../../../etc/passwd "$d"/l3/escape
	ln -s /etc "$d"/l3/abs-etc
	# unreadable directory and file
	echo secret >"$d"/l3/unread/inner/f
	chmod 0000 "$d"/l3/unread "$d"/l3/unread/inner
	# odd xattrs: garbage overlay markers, huge and binary values
	echo odd >"$d"/l3/odd/f
	setfattr -n trusted.overlay.redirect -v '/../../../../etc' "$d"/l2/fd
	mkdir "$d"/l3/odd2
	setfattr -n trusted.overlay.redirect -v "$(printf 'r%.0s' {1..3000})" "$d"/l3/odd2
	setfattr -n trusted.overlay.origin -v 0xdeadbeef "$d"/l3/odd/f
	setfattr -n trusted.overlay.metacopy -v 0x00 "$d"/l3/odd/f
	setfattr -n trusted.overlay.opaque -v "$(printf 'y%.0s' {1..2000})" "$d"/l3/odd
	setfattr -n user.overlay.redirect -v '../..' "$d"/l3/odd
	setfattr -n user.fuseoverlayfs.override_stat -v 'garbage:x:y' "$d"/l3/odd/f
	setfattr -n user.bin -v 0x00ff00ff00 "$d"/l3/odd/f
	# whiteout-looking but wrong devices, and .wh. forms pointing at dirs
	mknod "$d"/l2/notwh c 0 1
	mknod "$d"/l2/blk00 b 0 0
	touch "$d"/l2/.wh.
	touch "$d"/l2/.wh..
	mkdir "$d"/l2/.wh.dir-form
	mkdir "$d"/l2/dir-form
	echo x >"$d"/l2/dir-form/x
	mkdir -p "$d"/upper/wdir
	echo upper >"$d"/upper/wdir/u
}

@test "bad on-disk content gives errors, not a crash; the server keeps answering" {
	need_real_stratafs
	rm -rf "$T/w"
	mkdir -p "$T/w"
	build_bad "$T/w"
	mount_strata "$(lowers_of "$T/w")" "$T/w/upper" "$T/w/work" "$T/w/mnt"
	local m=$T/w/mnt pid=$STRATA_PID p
	for p in wdir wdir/sub wdir/sub/file wdir/sub/file2 fd df dangling loop escape abs-etc \
		unread unread/inner unread/inner/f odd odd/f odd2 notwh blk00 .wh. .wh.. dir-form; do
		bad_probe "$m" stat "$m/$p"
		bad_probe "$m" cat "$m/$p"
		bad_probe "$m" ls -la "$m/$p"
		bad_probe "$m" getfattr -d -m - "$m/$p"
		bad_probe "$m" readlink "$m/$p"
		pid_alive "$pid" || fail "stratafs died on $p"
	done
	bad_probe "$m" find "$m" -ls
	tree_listing "$m" >/dev/null || true
	# changes on top of the bad content
	bad_probe "$m" touch "$m/wdir/sub/new"
	bad_probe "$m" mkdir -p "$m/wdir/sub/x"
	bad_probe "$m" rm -rf "$m/odd"
	bad_probe "$m" mv "$m/fd" "$m/fd2"
	bad_probe "$m" chmod 0755 "$m/unread"
	bad_probe "$m" sh -c "echo x >> '$m/unread/inner/f'"
	bad_probe "$m" cat "$m/escape"
	pid_alive "$pid" || fail "stratafs died"
	# still answering, and what must work does
	run cat "$m/wdir/u"
	assert_output upper
	run ls -A "$m/wdir"
	assert_output $'sub\nu'
	# created over the whiteout: nothing from the layers below shows through
	run ls -A "$m/wdir/sub"
	assert_output x
	run cat "$m/dir-form/x"
	assert_output x
	run stat -c %F "$m/fd"
	refute_output --partial regular
}

@test "bad on-disk content reads like the kernel where the kernel defines it" {
	build_bad_kernel() {
		build_bad "$1"
		# the kernel would follow these: keep to what both define
		setfattr -x trusted.overlay.redirect "$1"/l2/fd
		setfattr -x trusted.overlay.redirect "$1"/l3/odd2
		setfattr -x trusted.overlay.opaque "$1"/l3/odd
		setfattr -x trusted.overlay.origin "$1"/l3/odd/f
		setfattr -x trusted.overlay.metacopy "$1"/l3/odd/f
		setfattr -x user.overlay.redirect "$1"/l3/odd
		setfattr -x user.fuseoverlayfs.override_stat "$1"/l3/odd/f
		rm -f "$1"/l2/.wh. "$1"/l2/.wh..
		rmdir "$1"/l2/.wh.dir-form
	}
	ops() {
		step ls -A wdir
		step cat wdir/sub/file
		step mkdir wdir/sub
		step ls -A unread/inner
		step asuser ls -A unread
		step cat dangling
		step cat loop
		step sh -c 'head -n 1 escape'
		step ls abs-etc/hostname
		step stat -c '%n %F %t:%T' fd df notwh blk00
		step ls -A odd odd2
		step rm -rf unread
	}
	compare_with_kernel build_bad_kernel ops
}
