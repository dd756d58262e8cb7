# podman_helpers.bash - fixtures for podman.bats: real podman (runc, tight
# ulimits, no network) on a private store per test file, with MOUNT_PROGRAM
# (default build/stratafs) as overlay.mount_program, and a busybox-static
# image imported from a tarball (there is no registry).
#
# MOUNT_PROGRAM=/usr/bin/fuse-overlayfs checks the tests against the reference.

REPO=${REPO:-$(cd "$BATS_TEST_DIRNAME/../.." && pwd)}
MOUNT_PROGRAM=${MOUNT_PROGRAM:-$REPO/build/stratafs}
# the root filesystem type a container must see: fuse.<program name>
EXPECT_FSTYPE=${EXPECT_FSTYPE:-fuse.$(basename "$MOUNT_PROGRAM")}
IMAGE=localhost/strata-bb:latest

# a hung FUSE server must fail one test, not stall the suite (teardown still runs)
BATS_TEST_TIMEOUT=${BATS_TEST_TIMEOUT:-180}

load /usr/lib/bats/bats-support/load
load /usr/lib/bats/bats-assert/load

# The podman command line for the private store of this test file ($PT).
pm_argv()
{
	PM_ARGV=(podman --root "$PT/storage" --runroot "$PT/run" --tmpdir "$PT/tmp"
		--storage-driver overlay --storage-opt "overlay.mount_program=$MOUNT_PROGRAM"
		--runtime runc --cgroup-manager cgroupfs --events-backend file)
}

# pm ARGS... - podman on the private store. fd 3 (bats) is closed so that
# conmon and the mount program daemon cannot hold it.
pm()
{
	pm_argv
	"${PM_ARGV[@]}" "$@" 3>&-
}

# pm_timeout SECONDS ARGS... - the same with a deadline (teardown must finish
# even when a hung mount blocks podman).
pm_timeout()
{
	local t=$1
	shift
	pm_argv
	timeout -k 5 "$t" "${PM_ARGV[@]}" "$@" 3>&-
}

# pm_run ARGS... - podman run with the limits and network these machines need.
pm_run()
{
	pm run --network none --ulimit nofile=1024:1024 --ulimit nproc=1000:1000 "$@"
}

# A busybox-static root filesystem with a few files the tests change.
make_rootfs_tar()
{
	local d=$1/rootfs t
	mkdir -p "$d/bin" "$d/etc" "$d/tmp" "$d/proc" "$d/sys" "$d/dev" "$d/data/sub"
	cp /bin/busybox "$d/bin/"
	for t in sh ls cat echo mkdir rm stat sleep touch grep head wc test id mv cp ln awk; do
		ln -s busybox "$d/bin/$t"
	done
	echo original >"$d/etc/modme"
	echo doomed >"$d/etc/delme"
	echo keep >"$d/data/keep"
	echo deep >"$d/data/sub/deep"
	chmod 1777 "$d/tmp"
	tar -C "$d" -cf "$1/rootfs.tar" .
	rm -rf "$d"
}

# Why podman cannot run here at all, or nothing if it can (probed once per
# file with the vfs driver on a throwaway store, so the probe does not depend
# on the mount program under test).
podman_probe()
{
	command -v podman >/dev/null || { echo "podman is not installed"; return; }
	command -v runc >/dev/null || { echo "runc is not installed"; return; }
	local s=$PT/probe out rc=0
	local p=(podman --root "$s/storage" --runroot "$s/run" --tmpdir "$s/tmp" --storage-driver vfs
		--runtime runc --cgroup-manager cgroupfs --events-backend file)
	out=$("${p[@]}" import "$PT/rootfs.tar" localhost/probe:latest 2>&1 3>&-) &&
		out=$("${p[@]}" run --rm --network none --ulimit nofile=1024:1024 --ulimit nproc=1000:1000 \
			localhost/probe:latest echo probe-ok 2>&1 3>&-) || rc=$?
	"${p[@]}" rm -af >/dev/null 2>&1 3>&-
	"${p[@]}" rmi -af >/dev/null 2>&1 3>&-
	unmount_under "$s"
	rm -rf --one-file-system "$s"
	if [ "$rc" -ne 0 ] || [[ "$out" != *probe-ok* ]]; then
		echo "podman cannot run a container on this machine (vfs probe): $(echo "$out" | tail -n 3 | tr '\n' ' ')"
	fi
}

# Mount points under $1, deepest first.
mounts_under()
{
	awk -v t="$1/" 'index($5, t) == 1 { print $5 }' /proc/self/mountinfo | sort -r
}

# mounts of the mount program's type under $1 (fstype, mount point).
fuse_mounts_under()
{
	awk -v t="$1/" -v ft="$EXPECT_FSTYPE" 'index($5, t) == 1 {
		for (i = 7; i <= NF; i++) if ($i == "-") { if ($(i + 1) == ft) print $(i + 1), $5 } }' /proc/self/mountinfo
}

unmount_under()
{
	local m
	for m in $(mounts_under "$1"); do
		timeout 10 umount "$m" 2>/dev/null ||
			timeout 10 fusermount3 -u "$m" 2>/dev/null ||
			timeout 10 umount -l "$m" 2>/dev/null ||
			echo "# could not unmount $m" >&3
	done
}

proc_alive()
{
	local st
	st=$(sed -e 's/.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
	[ -n "$st" ] && [ "${st%% *}" != Z ]
}

# Live processes whose argv mentions $2 and whose argv[0] or executable is $1.
pids_of()
{
	local prog=$1 needle=$2 want base p exe argv0
	want=$(readlink -f "$prog")
	base=$(basename "$prog")
	for p in /proc/[0-9]*; do
		p=${p#/proc/}
		[ "$p" = "$$" ] || [ "$p" = "$BASHPID" ] && continue
		grep -qzF -- "$needle" "/proc/$p/cmdline" 2>/dev/null || continue
		exe=$(readlink "/proc/$p/exe" 2>/dev/null) || exe=
		exe=${exe% (deleted)}
		argv0=$(tr '\0' '\n' <"/proc/$p/cmdline" 2>/dev/null | head -n1)
		[ "$exe" = "$want" ] || [ "$(basename -- "$argv0")" = "$base" ] || continue
		proc_alive "$p" && echo "$p"
	done
	return 0
}

# mount program processes serving this file's store
mount_program_pids()
{
	pids_of "$MOUNT_PROGRAM" "$PT/"
}

describe_pids()
{
	local p
	for p in "$@"; do
		echo "[pid $p] $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)"
	done
}

# Nothing of the mount program is left for this store: no mount, no process.
# Unmount and exit are asynchronous to podman's return: allow 10 s.
assert_no_leftovers()
{
	local end=$((SECONDS + 10)) m p
	while :; do
		m=$(fuse_mounts_under "$PT")
		p=$(mount_program_pids)
		[ -z "$m" ] && [ -z "$p" ] && return 0
		[ "$SECONDS" -lt "$end" ] || break
		sleep 0.1
	done
	fail "left behind after podman: mounts: [${m}] processes: [$(describe_pids $p)]"
}

# End, by PID, processes of ours still tied to $PT (mount program, conmon).
end_pids_under()
{
	local p pids
	pids="$(mount_program_pids) $(pids_of /usr/bin/conmon "$PT/")"
	for p in $pids; do
		echo "# ending leftover $(describe_pids "$p")" >&3
		kill -TERM "$p" 2>/dev/null
	done
	for p in $pids; do
		local end=$((SECONDS + 3))
		while proc_alive "$p" && [ "$SECONDS" -lt "$end" ]; do sleep 0.05; done
		proc_alive "$p" && kill -KILL "$p" 2>/dev/null
	done
	return 0
}

podman_setup_file()
{
	PT=$(mktemp -d /tmp/strata-podman.XXXXXX)
	export PT
	make_rootfs_tar "$PT"
	PODMAN_SKIP=$(podman_probe)
	export PODMAN_SKIP
	[ -z "$PODMAN_SKIP" ] || return 0
	if [ ! -x "$MOUNT_PROGRAM" ]; then
		echo "# $MOUNT_PROGRAM is missing: run 'make' first (or set MOUNT_PROGRAM)" >&3
		return 1
	fi
	pm import "$PT/rootfs.tar" "$IMAGE" >/dev/null
}

podman_setup()
{
	[ -z "${PODMAN_SKIP:-}" ] || skip "$PODMAN_SKIP"
}

# Per test: remove this test's containers (images stay for the file).
podman_teardown()
{
	[ -n "${PT:-}" ] && [ -z "${PODMAN_SKIP:-}" ] || return 0
	pm_timeout 60 rm -af -t 0 >/dev/null 2>&1 || true
}

podman_teardown_file()
{
	[ -n "${PT:-}" ] && [ -d "$PT" ] || return 0
	if [ -z "${PODMAN_SKIP:-}" ]; then
		pm_timeout 60 rm -af -t 0 >/dev/null 2>&1 || echo "# podman rm -af failed" >&3
		pm_timeout 60 rmi -af >/dev/null 2>&1 || echo "# podman rmi -af failed" >&3
	fi
	unmount_under "$PT"
	end_pids_under
	unmount_under "$PT"
	if [ -n "$(mounts_under "$PT")" ]; then
		echo "# still mounted, not removing $PT: $(mounts_under "$PT")" >&3
		return 1
	fi
	rm -rf --one-file-system "$PT"
}
