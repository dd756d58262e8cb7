#!/bin/bash
# demo.sh - show strata at work on a small 3-layer overlay, step by step.
#
# Builds two lower layers (with every whiteout and opaque form), an upper and a
# work dir in a temp dir, writes a JSON spec for them and mounts it with
# `build/strata mount` (which starts a sandboxed build/stratafs), prints the status
# document, the merged view, a copy-up and a whiteout, then `strata unmount`s and
# cleans up. Run as root (mknod and trusted.* xattrs); `make demo` builds first.
# STRATA=/path and STRATAFS=/path override the binaries.
set -euo pipefail

cd "$(dirname "$0")/.."
STRATAFS=${STRATAFS:-$PWD/build/stratafs}
STRATA=${STRATA:-$PWD/build/strata}
export STRATAFS

section() { printf '\n=== %s ===\n' "$*"; }
note() { printf '  %s\n' "$*"; }
expect() { # DESCRIPTION COMMAND...: print OK/UNEXPECTED for a claim the demo makes
	local what=$1
	shift
	if "$@" >/dev/null 2>&1; then
		printf '  [ok] %s\n' "$what"
	else
		printf '  [UNEXPECTED] %s\n' "$what"
		unexpected=$((unexpected + 1))
	fi
}
unexpected=0

for b in "$STRATAFS" "$STRATA"; do
	if [ ! -x "$b" ]; then
		echo "demo: $b not found; run 'make' (or 'make demo')" >&2
		exit 1
	fi
done
if ! command -v jq >/dev/null; then
	echo "demo: jq is needed to read strata's JSON (make deps installs it)" >&2
	exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "demo: run as root (it creates char 0/0 whiteouts and trusted.* xattrs)" >&2
	exit 1
fi

T=$(mktemp -d /tmp/strata-demo.XXXXXX)
L1=$T/lower1 L2=$T/lower2 U=$T/upper W=$T/work M=$T/merged
STATE=$T/state SPEC=$T/spec.json ID=demo
DAEMON_PID=""
strata() { "$STRATA" --state-dir "$STATE" "$@"; }

is_mounted() { awk -v m="$M" '$2 == m { found = 1 } END { exit !found }' /proc/mounts; }

# wait_gone PID SECONDS: poll until the process has exited
wait_gone() {
	local pid=$1 deadline=$((SECONDS + $2))
	while [ -d "/proc/$pid" ] && [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]; do
		[ "$SECONDS" -lt "$deadline" ] || return 1
		sleep 0.1
	done
}

unmount() {
	[ -f "$STATE/$ID.json" ] && strata unmount "$ID" >/dev/null 2>&1
	is_mounted || return 0
	umount "$M" 2>/dev/null || umount -l "$M" || true
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	unmount
	if [ -n "$DAEMON_PID" ] && ! wait_gone "$DAEMON_PID" 10; then
		echo "demo: stratafs ($DAEMON_PID) did not exit; stopping it" >&2
		kill "$DAEMON_PID" 2>/dev/null || true
		wait_gone "$DAEMON_PID" 5 || true
	fi
	if is_mounted; then
		echo "demo: $M is still mounted; leaving $T in place" >&2
	else
		rm -rf "$T"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

show_tree() { # DIR: every entry with its type, and the content of regular files
	local dir=$1 p rel
	(cd "$dir" && find . -mindepth 1 | LC_ALL=C sort) | while read -r p; do
		rel=${p#./}
		if [ -L "$dir/$rel" ]; then
			note "$rel -> $(readlink "$dir/$rel")"
		elif [ -c "$dir/$rel" ]; then
			note "$rel  (char device $(stat -c '%t/%T' "$dir/$rel"): whiteout)"
		elif [ -d "$dir/$rel" ]; then
			local opq
			opq=$(getfattr --absolute-names --only-values -n trusted.overlay.opaque "$dir/$rel" 2>/dev/null || true)
			note "$rel/${opq:+  (trusted.overlay.opaque=$opq)}"
		elif [ -f "$dir/$rel" ]; then
			note "$rel: $(paste -sd " " "$dir/$rel")"
		else
			note "$rel  ($(stat -c %F "$dir/$rel"))"
		fi
	done
}

section "Layers in $T"
mkdir -p "$L1" "$L2" "$U" "$W" "$M"
# lower2: the base image
echo "a from lower2" >"$L2/a"
echo "b from lower2" >"$L2/b"
mkdir "$L2/d" "$L2/o"
echo "x from lower2" >"$L2/d/x"
echo "y from lower2" >"$L2/d/y"
echo "old from lower2" >"$L2/o/old"
# lower1: the layer above it
echo "a replaced in lower1" >"$L1/a"
mknod "$L1/b" c 0 0
mkdir "$L1/o" "$L1/d"
setfattr -n trusted.overlay.opaque -v y "$L1/o"
echo "new in lower1" >"$L1/o/new"
: >"$L1/d/.wh.y"

echo "lower2 (bottom):"
show_tree "$L2"
echo "lower1 (top lower): replaces a, whites out b (char 0/0), d/.wh.y hides d/y, o/ is opaque"
show_tree "$L1"
echo "upper: (empty)"

section "The spec"
cat >"$SPEC" <<EOF
{
  "id": "$ID",
  "target": "$M",
  "lower": ["$L1", "$L2"],
  "upper": "$U",
  "work": "$W",
  "options": {"mountOptions": ["nodev"]}
}
EOF
sed 's/^/  /' "$SPEC"

section "Mount: strata mount -f spec.json"
echo "+ $STRATA --state-dir $STATE mount -f $SPEC"
status=0
timeout 60 "$STRATA" --state-dir "$STATE" mount -f "$SPEC" >"$T/status.json" || status=$?
sed 's/^/  /' "$T/status.json"
expect "strata mount exited 0" test "$status" -eq 0
[ "$status" -eq 0 ] || exit 1
expect "mounted (type $(awk -v m="$M" '$2 == m { print $3 }' /proc/mounts))" is_mounted
DAEMON_PID=$(jq -r .pid "$T/status.json")
note "server pid: $DAEMON_PID; what the kernel says about it:"
grep -E '^(CapEff|NoNewPrivs|Seccomp):' "/proc/$DAEMON_PID/status" | sed 's/^/    /'
expect "state is mounted" test "$(jq -r .state "$T/status.json")" = mounted
expect "the server runs with no_new_privs and a seccomp filter" \
	test "$(jq -r '.sandbox.noNewPrivs, .sandbox.seccomp' "$T/status.json" | paste -sd' ')" = "true filter"
expect "in a private mount namespace" test "$(jq -r .sandbox.mountNamespace "$T/status.json")" = private
expect "without CAP_SYS_PTRACE, CAP_NET_*, CAP_SETUID, CAP_KILL" \
	bash -c "! jq -r '.sandbox.capabilities[]' '$T/status.json' | grep -qE 'PTRACE|NET_|SETUID|KILL'"

section "Merged view"
show_tree "$M"
expect "a comes from lower1" grep -qx "a replaced in lower1" "$M/a"
expect "b is hidden by the char 0/0 whiteout" test ! -e "$M/b"
expect "d/y is hidden by d/.wh.y, d/x is visible" bash -c "test ! -e '$M/d/y' && test -f '$M/d/x'"
expect "o/ is opaque: o/old is hidden, o/new is visible" bash -c "test ! -e '$M/o/old' && test -f '$M/o/new'"
expect "no .wh.* names are visible" bash -c "! find '$M' -name '.wh.*' | grep -q ."

section "Copy-up: append to a"
echo "+ echo 'appended through the mount' >> merged/a"
echo "appended through the mount" >>"$M/a"
echo "merged/a:"
sed 's/^/  /' "$M/a"
echo "lower1/a (unchanged):"
sed 's/^/  /' "$L1/a"
echo "upper/a (the copy):"
sed 's/^/  /' "$U/a"
expect "lower1/a is unchanged" grep -qx "a replaced in lower1" "$L1/a"
expect "upper/a holds the new content" grep -qx "appended through the mount" "$U/a"

section "Delete a lower file: rm d/x"
echo "+ rm merged/d/x"
rm "$M/d/x"
echo "+ ls -l upper/d"
ls -l "$U/d" | sed 's/^/  /'
expect "d/x is gone from the merged view" test ! -e "$M/d/x"
expect "upper/d/x is a char 0/0 whiteout (or a .wh.x file)" \
	bash -c "{ test -c '$U/d/x' && test \"\$(stat -c %t/%T '$U/d/x')\" = 0/0; } || test -e '$U/d/.wh.x'"
expect "lower2/d/x is still there" test -f "$L2/d/x"

section "Upper layer after the changes"
show_tree "$U"

section "strata list"
strata list | jq -c '.[] | {id, state, target, pid}' | sed 's/^/  /'

section "Unmount: strata unmount $ID"
echo "+ $STRATA --state-dir $STATE unmount $ID"
strata unmount "$ID" | sed 's/^/  /'
expect "unmounted" bash -c "! awk -v m='$M' '\$2 == m { f = 1 } END { exit !f }' /proc/mounts"
if [ -n "$DAEMON_PID" ]; then
	expect "stratafs ($DAEMON_PID) exited" wait_gone "$DAEMON_PID" 10
fi
expect "no state record is left" test ! -e "$STATE/$ID.json"

echo
if [ "$unexpected" -ne 0 ]; then
	echo "demo: $unexpected unexpected result(s)"
	exit 1
fi
echo "demo: all done, everything as expected; removing $T"
