#!/bin/bash
# libfuse.sh - build a private, static libfuse 3.17 (Debian trixie's fuse3 source package)
# into $PREFIX (default build/libfuse), for the FUSE-passthrough build of stratafs
# (`make passthrough`). The system's libfuse (Debian 12: 3.14) has no passthrough.
#
# Cached: does nothing when $PREFIX already holds a fuse3.pc. The source comes from
# Debian's own archive through apt-get source, with a private apt state (sources list,
# lists and cache under $WORK), so the machine's apt configuration is left alone; the
# archive URI is the one the machine's own Debian source list uses.
#
# Exit 0 on success; 77 (with the reason on stderr) when it cannot be built here (no
# network, no apt-get, no meson), so callers can skip instead of failing.
set -euo pipefail

BUILD=${BUILD:-build}
PREFIX=${PREFIX:-$BUILD/libfuse}
WORK=${WORK:-$BUILD/libfuse-src}
SUITE=${LIBFUSE_SUITE:-trixie}

mkdir -p "$PREFIX"
PREFIX=$(cd "$PREFIX" && pwd)
pc=$(find "$PREFIX" -name fuse3.pc 2>/dev/null | head -n1)
if [ -n "$pc" ]; then
	exit 0
fi

skip() {
	echo "libfuse: skipped: $*" >&2
	exit 77
}

for tool in apt-get meson ninja cc; do
	command -v "$tool" >/dev/null 2>&1 || skip "$tool is not installed (scripts/deps.sh installs meson and ninja-build)"
done

mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)

# The mirror: the URI of the machine's Debian source list (deb822 or one-line format).
uri=""
if [ -r /etc/apt/sources.list.d/debian.sources ]; then
	uri=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources)
fi
if [ -z "$uri" ]; then
	uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
		awk '$1 == "deb" && $0 ~ /debian/ && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; exit } }')
fi
uri=${uri:-http://deb.debian.org/debian}

tarball=$(ls "$WORK"/fuse3_3.*.orig.tar.* 2>/dev/null | head -n1 || true)
if [ -z "$tarball" ]; then
	apt=$WORK/apt
	mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/sources.list.d"
	printf 'deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s %s main\n' \
		"$uri" "$SUITE" >"$apt/sources.list"
	aptopts=(-o "Dir::Etc::SourceList=$apt/sources.list" -o "Dir::Etc::SourceParts=$apt/sources.list.d"
		-o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache"
		-o "APT::Sandbox::User=root" -o "Acquire::Languages=none")
	echo "libfuse: fetching fuse3 source ($SUITE) from $uri"
	apt-get "${aptopts[@]}" -q update >"$WORK/apt-update.log" 2>&1 ||
		skip "apt-get update of $uri $SUITE (deb-src) failed, see $WORK/apt-update.log"
	(cd "$WORK" && apt-get "${aptopts[@]}" -q source --download-only "fuse3/$SUITE") \
		>"$WORK/apt-source.log" 2>&1 ||
		skip "apt-get source fuse3/$SUITE failed, see $WORK/apt-source.log"
	tarball=$(ls "$WORK"/fuse3_3.*.orig.tar.* 2>/dev/null | head -n1 || true)
	[ -n "$tarball" ] || skip "no fuse3 orig tarball after apt-get source"
fi

echo "libfuse: building $(basename "$tarball") into $PREFIX"
src=$WORK/src
rm -rf "$src"
mkdir -p "$src"
tar -xf "$tarball" -C "$src" --strip-components=1
(
	cd "$src"
	# no udev rules, no init scripts: only the library and its headers
	meson setup build --default-library=static -Dexamples=false -Dutils=false -Dtests=false \
		--prefix="$PREFIX" --libdir=lib -Dbuildtype=release >"$WORK/meson.log" 2>&1 ||
		{ cat "$WORK/meson.log" >&2; exit 1; }
	ninja -C build install >"$WORK/ninja.log" 2>&1 || { tail -n 40 "$WORK/ninja.log" >&2; exit 1; }
)
pc=$(find "$PREFIX" -name fuse3.pc | head -n1)
[ -n "$pc" ] || { echo "libfuse: no fuse3.pc under $PREFIX after the build" >&2; exit 1; }
echo "libfuse: $(PKG_CONFIG_PATH=$(dirname "$pc") pkg-config --modversion fuse3) in $PREFIX"
