# driver_helpers.bash - fixtures for driver.bats: a private tree and state dir per test,
# running build/strata with a deadline, reading its JSON with jq, finding the processes it
# started, and a teardown that unmounts (through strata, then by force) and ends by PID
# whatever a test left, even when it failed half-way.

REPO=${REPO:-$(cd "$BATS_TEST_DIRNAME/../.." && pwd)}
STRATA=${STRATA:-$REPO/build/strata}
export STRATAFS=${STRATAFS:-$REPO/build/stratafs}
FUSE_SUPER_MAGIC=65735546

BATS_TEST_TIMEOUT=${BATS_TEST_TIMEOUT:-120}

load /usr/lib/bats/bats-support/load
load /usr/lib/bats/bats-assert/load

driver_setup()
{
	[ "$(id -u)" = 0 ] || skip "the driver mounts with mount(2): run as root"
	[ -c /dev/fuse ] || skip "no /dev/fuse"
	command -v jq >/dev/null || skip "jq is not installed (make deps)"
	[ -x "$STRATA" ] || fail "$STRATA is missing: run make"
	T=$(mktemp -d /tmp/strata-drv.XXXXXX)
	SD=$T/state
	M=$T/m
	mkdir -p "$T/l1" "$T/l2" "$T/u" "$T/w" "$M"
	# l2 (bottom): a, b, d/{x,y}, o/old; l1: replaces a, whites out b (char 0/0) and d/y
	# (.wh. file), and makes o/ opaque (trusted.overlay.opaque)
	echo "a from l2" >"$T/l2/a"
	echo "b from l2" >"$T/l2/b"
	mkdir -p "$T/l2/d" "$T/l2/o" "$T/l1/d" "$T/l1/o"
	echo x >"$T/l2/d/x"
	echo y >"$T/l2/d/y"
	echo old >"$T/l2/o/old"
	echo "a from l1" >"$T/l1/a"
	mknod "$T/l1/b" c 0 0
	: >"$T/l1/d/.wh.y"
	setfattr -n trusted.overlay.opaque -v y "$T/l1/o"
	echo new >"$T/l1/o/new"
	PROCS_BEFORE=$(driver_procs)
}

# Every live stratafs and strata-monitor process of this test, one pid a line: those
# holding an fd into $T (a server holds its layers, a monitor the state dir). Other test
# runs on the machine have their own trees, so they never count.
driver_procs()
{
	local d comm st fd
	for d in /proc/[0-9]*; do
		{ read -r comm <"$d/comm"; } 2>/dev/null || continue
		case $comm in stratafs | strata-monitor) ;; *) continue ;; esac
		st=$(sed -E 's/^.*\) (.).*/\1/' "$d/stat" 2>/dev/null) || continue
		[ "$st" = Z ] && continue
		for fd in "$d"/fd/*; do
			case $(readlink "$fd" 2>/dev/null) in "$T"/*)
				echo "${d#/proc/}"
				break
				;;
			esac
		done
	done | sort
}

# Processes started since setup (the tests run one at a time).
new_procs()
{
	comm -13 <(echo "$PROCS_BEFORE") <(driver_procs) | grep . || true
}

# wait_no_new_procs SECONDS: the servers and monitors of this test have all exited.
wait_no_new_procs()
{
	local end=$((SECONDS + ${1:-10}))
	while [ -n "$(new_procs)" ]; do
		[ "$SECONDS" -lt "$end" ] || return 1
		sleep 0.05
	done
}

# st ARGS...: runs strata with the test's state dir and a deadline. Sets $status, $out
# (stdout, the JSON document) and $err. Files, not pipes: a leaked daemon cannot hang us.
st()
{
	status=0
	timeout -k 5 90 "$STRATA" --state-dir "$SD" "$@" >"$T/out" 2>"$T/err" || status=$?
	out=$(cat "$T/out")
	err=$(cat "$T/err")
}

# mount_spec JSON: strata mount with the spec on stdin.
mount_spec()
{
	printf '%s' "$1" >"$T/spec.json"
	status=0
	timeout -k 5 90 "$STRATA" --state-dir "$SD" mount <"$T/spec.json" >"$T/out" 2>"$T/err" ||
		status=$?
	out=$(cat "$T/out")
	err=$(cat "$T/err")
}

# j FILTER: jq -r on the last document.
j()
{
	jq -r "$1" <<<"$out"
}

show()
{
	echo "status: $status"
	echo "stdout: $out"
	echo "stderr: $err"
}

native_spec() # [ID [TARGET]]
{
	local id=${1:-t1} target=${2:-$M}
	printf '{"id": "%s", "target": "%s", "lower": ["%s", "%s"], "upper": "%s", "work": "%s"}' \
		"$id" "$target" "$T/l1" "$T/l2" "$T/u" "$T/w"
}

is_mounted()
{
	awk -v m="$1" '$5 == m { f = 1 } END { exit !f }' /proc/self/mountinfo
}

assert_live()
{
	local m=${1:-$M} t
	is_mounted "$m" || fail "$m is not mounted"
	t=$(timeout 5 stat -f -c %t "$m") || fail "statfs($m) failed or hung"
	[ "$t" = "$FUSE_SUPER_MAGIC" ] || fail "statfs($m) says $t, not FUSE"
}

records()
{
	find "$SD" -maxdepth 1 -name '*.json' 2>/dev/null | sort
}

# assert_refused EXIT FIELD CODE: the last strata mount failed as it should and left
# nothing: no mount on $M, no new process, no state record.
assert_refused()
{
	local want_exit=$1 field=$2 code=$3
	if [ "$status" -ne "$want_exit" ]; then
		show
		fail "exit status $status, want $want_exit"
	fi
	[ "$(j .state)" = error ] || { show; fail "state is not error"; }
	[ "$(j '.error.field // ""')" = "$field" ] || { show; fail "error.field is '$(j .error.field)', want '$field'"; }
	if [ -n "$code" ] && [ "$(j .error.code)" != "$code" ]; then
		show
		fail "error.code is '$(j .error.code)', want '$code'"
	fi
	[ "$(j .error.errno)" -gt 0 ] || fail "error.errno is missing"
	[ -n "$(j .error.message)" ] || fail "error.message is empty"
	[ -n "$err" ] || fail "nothing on stderr"
	is_mounted "$M" && fail "$M was mounted"
	wait_no_new_procs 5 || fail "processes left: $(new_procs)"
	[ -z "$(records)" ] || fail "state records left: $(records)"
}

# Teardown: unmount every recorded mount through strata, then by force whatever is still
# mounted under $T, end the processes this test started (by PID), remove the tree.
driver_teardown()
{
	[ -n "${T:-}" ] && [ -d "$T" ] || return 0
	local f id m p left
	for f in $(records); do
		id=$(basename "$f" .json)
		timeout 30 "$STRATA" --state-dir "$SD" unmount "$id" >/dev/null 2>&1 ||
			echo "# teardown: strata unmount $id failed" >&3
	done
	for m in $(awk -v t="$T/" 'index($5, t) == 1 { print $5 }' /proc/self/mountinfo | sort -r); do
		timeout 10 umount -l "$m" 2>/dev/null || echo "# teardown: could not unmount $m" >&3
	done
	for p in $(new_procs); do
		kill -TERM "$p" 2>/dev/null
	done
	if ! wait_no_new_procs 5; then
		for p in $(new_procs); do
			echo "# teardown: pid $p ($(cat /proc/"$p"/comm 2>/dev/null)) survived SIGTERM" >&3
			kill -KILL "$p" 2>/dev/null
		done
		wait_no_new_procs 5 || true
	fi
	left=$(awk -v t="$T/" 'index($5, t) == 1 { print $5 }' /proc/self/mountinfo)
	if [ -n "$left" ]; then
		echo "# teardown: still mounted, not removing $T: $left" >&3
		return 1
	fi
	rm -rf --one-file-system "$T"
}
