# packaging_helpers.bash - fixtures for packaging.bats: the package build, and a fresh
# Debian root (debootstrap --variant=minbase) to install it into.
#
# The root lives in build/pkgtest/root; debootstrap's package cache in build/pkgtest/cache
# is kept between runs (nothing is cached outside build/). Everything mounted for the root
# (a bind of the root on itself, so that the sandboxed server's pivot_root works after
# chroot; /proc) and every FUSE mount made in it lives in a private mount namespace, held
# by one `sleep` started with unshare: the host's mount table never sees them, and they
# all go when the namespace's last process does. teardown kills, by pid, only stratafs
# processes that run in that namespace or that strata's state records in the root name.
# Host /dev is never touched: the root's /dev/fuse is a node made inside the root.

REPO=${STRATA_ROOT:-$(cd "$BATS_TEST_DIRNAME/../.." && pwd)}
PKG_DIR=$REPO/build/pkgtest
ROOT=$PKG_DIR/root
CACHE=$PKG_DIR/cache
HOLDER_FILE=$PKG_DIR/holder.pid
VERSION=$(sed -n 's/^#define STRATA_VERSION "\(.*\)"$/\1/p' "$REPO/core/ovl.h")
ARCH=$(dpkg --print-architecture 2>/dev/null || echo unknown)
DEB=$REPO/build/deb/strata_${VERSION}_$ARCH.deb

# the files the package must hold (the .deb compresses man pages)
PKG_FILES=(
	/usr/bin/stratafs
	/usr/bin/strata
	/usr/libexec/strata/strata-hook
	/usr/share/man/man1/stratafs.1
	/usr/share/man/man8/strata.8
	/usr/share/man/man1/strata-hook.1
	/usr/share/containers/oci/hooks.d/strata-precreate.json
	/usr/share/containers/oci/hooks.d/strata-poststop.json
	/usr/share/doc/strata/storage.conf
	/usr/share/doc/strata/containerd.md
)

log() { echo "# $*" >&3; }

need_root() {
	[ "$(id -u)" = 0 ] || skip "needs root (debootstrap, chroot, mount)"
}

need_tool() { # TOOL PACKAGE
	command -v "$1" >/dev/null || skip "$1 is not installed (apt-get install $2, or make deps)"
}

# The host's Debian mirror and suite: the package is built against the host's
# libraries, so the fresh root is the same release.
pkg_mirror() {
	local uri=""
	[ -r /etc/apt/sources.list.d/debian.sources ] &&
		uri=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources)
	[ -n "$uri" ] || [ ! -r /etc/apt/sources.list ] ||
		uri=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; exit } }' \
			/etc/apt/sources.list)
	echo "${uri:-http://deb.debian.org/debian}"
}
pkg_suite() {
	(. /etc/os-release && echo "${VERSION_CODENAME:-}")
}

# need_mirror: skips (saying why) when the mirror cannot be reached at all.
need_mirror() {
	local uri host port
	uri=$(pkg_mirror)
	# through the proxy debootstrap and apt will use, if there is one
	case $uri in
	https:*) [ -z "${https_proxy:-}" ] || uri=$https_proxy ;;
	*) [ -z "${http_proxy:-}" ] || uri=$http_proxy ;;
	esac
	host=${uri#*://}
	host=${host#*@}
	host=${host%%/*}
	port=80
	[ "${uri%%://*}" = https ] && port=443
	case $host in *:*) port=${host##*:} host=${host%%:*} ;; esac
	timeout 10 bash -c "exec 9<>/dev/tcp/$host/$port" 2>/dev/null ||
		skip "the Debian mirror $uri is unreachable (port $port)"
}

# proc_start PID: the process's start time (field 22 of /proc/PID/stat), which tells a
# process from a later one that got the same pid
proc_start() {
	sed -E 's/^.*\) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $20 }'
}

# start_holder: the sleep that holds the private mount namespace; HOLDER_FILE gets
# "PID STARTTIME".
start_holder() {
	local p
	unshare --mount --propagation private -- sleep 3600 </dev/null >/dev/null 2>&1 3>&- &
	p=$!
	echo "$p $(proc_start "$p")" >"$HOLDER_FILE"
}

holder_pid() {
	local p t
	read -r p t <"$HOLDER_FILE" 2>/dev/null || return 1
	# ours: the same process (pid and start time), a sleep in a mount namespace not ours
	[ -n "$p" ] && [ "$(proc_start "$p")" = "$t" ] &&
		[ "$(cat "/proc/$p/comm" 2>/dev/null)" = sleep ] &&
		[ "$(readlink "/proc/$p/ns/mnt")" != "$(readlink /proc/self/ns/mnt)" ] || return 1
	echo "$p"
}

# inroot CMD...: runs CMD in the root (chroot in the private namespace), with a clean
# environment.
inroot() {
	local h
	h=$(holder_pid) || {
		echo "inroot: the namespace holder is gone (the install test failed?)" >&2
		return 1
	}
	nsenter -t "$h" -m -- chroot "$ROOT" /usr/bin/env -i \
		PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C HOME=/root \
		${http_proxy:+http_proxy=$http_proxy} ${https_proxy:+https_proxy=$https_proxy} \
		${no_proxy:+no_proxy=$no_proxy} "$@"
}

# need_root_fs: the installed root of the install test is there.
need_installed_root() {
	holder_pid >/dev/null && [ -x "$ROOT/usr/bin/stratafs" ] || {
		echo "# no installed root: the apt-get install test failed or was skipped" >&2
		return 1
	}
}

# ns_stratafs_gone: polls up to 5 s until no stratafs of this file runs (ns_stratafs_pids)
ns_stratafs_gone() {
	local i
	for i in $(seq 50); do
		[ -z "$(ns_stratafs_pids)" ] && return 0
		sleep 0.1
	done
	[ -z "$(ns_stratafs_pids)" ]
}

# ns_stratafs_pids: stratafs processes of this file: in the holder's namespace, or
# named by a strata state record in the root (the sandboxed servers have their own
# namespace).
ns_stratafs_pids() {
	local h ns d p f
	h=$(holder_pid) && ns=$(readlink "/proc/$h/ns/mnt")
	for d in /proc/[0-9]*; do
		[ "$(cat "$d/comm" 2>/dev/null)" = stratafs ] || continue
		p=${d#/proc/}
		if [ -n "${ns:-}" ] && [ "$(readlink "$d/ns/mnt" 2>/dev/null)" = "$ns" ]; then
			echo "$p"
			continue
		fi
		for f in "$ROOT"/run/strata/*.json; do
			[ -f "$f" ] || continue
			grep -qE "\"pid\": *$p[,}[:space:]]" "$f" && echo "$p" && break
		done
	done
}

# reap_root: unmount everything in the namespace, end our stratafs processes, end the
# holder (which drops the namespace and whatever was still mounted in it).
reap_root() {
	local h m p i
	if h=$(holder_pid); then
		# deepest first
		for m in $(awk -v r="$ROOT" '$5 == r || index($5, r "/") == 1 { print $5 }' \
			"/proc/$h/mountinfo" | sort -r); do
			nsenter -t "$h" -m -- umount -l "$m" 2>/dev/null || true
		done
	fi
	for i in 1 2 3 4 5 6 7 8 9 10; do
		[ -z "$(ns_stratafs_pids)" ] && break
		sleep 0.3
	done
	for p in $(ns_stratafs_pids); do
		echo "# packaging: killing leftover stratafs $p: $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)" >&3
		kill -KILL "$p" 2>/dev/null || true
	done
	if h=$(holder_pid); then
		kill "$h" 2>/dev/null || true
		for i in 1 2 3 4 5 6 7 8 9 10; do
			[ -d "/proc/$h" ] || break
			sleep 0.1
		done
	fi
	rm -f "$HOLDER_FILE"
}

# remove_root: deletes the root, but never while anything is mounted under it here.
remove_root() {
	if awk -v r="$ROOT" '$5 == r || index($5, r "/") == 1 { found = 1 } END { exit !found }' \
		/proc/self/mountinfo; then
		echo "# packaging: something is mounted under $ROOT: not removing it" >&3
		return 1
	fi
	rm -rf "$ROOT"
}
