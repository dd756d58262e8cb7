#!/bin/bash
# build-deb.sh - `make deb`: a binary Debian package of the working tree.
#
# Copies the tree (without build/ and .git) to $BUILD/deb/strata-VERSION, adds
# packaging/debian as debian/, runs dpkg-buildpackage -b there, and checks the
# result with lintian (--fail-on error; LINTIAN=0 skips it). The packages, .changes,
# .buildinfo and the build log (build.log) end up in $BUILD/deb/.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build}
VERSION=${VERSION:-$(sed -n 's/^#define STRATA_VERSION "\(.*\)"$/\1/p' core/ovl.h)}
out=$BUILD/deb
src=$out/strata-$VERSION

for tool in dpkg-buildpackage dh; do
	command -v "$tool" >/dev/null || {
		echo "deb: $tool is missing (apt-get install dpkg-dev debhelper, or make deps)" >&2
		exit 1
	}
done
# the package's version is debian/changelog's: keep it in step with STRATA_VERSION
clv=$(dpkg-parsechangelog -l packaging/debian/changelog -S Version)
if [ "$clv" != "$VERSION" ]; then
	echo "deb: packaging/debian/changelog is at $clv, core/ovl.h at $VERSION: add a changelog entry" >&2
	exit 1
fi

rm -rf "$out"
mkdir -p "$src"
tar --exclude=./build --exclude="./${BUILD#./}" --exclude=./.git --exclude=./debian -cf - . | tar -xf - -C "$src"
cp -a packaging/debian "$src/debian"

echo "deb: dpkg-buildpackage -b in $src (log: $out/build.log)"
if ! (cd "$src" && DEB_BUILD_OPTIONS="nocheck parallel=$(nproc) ${DEB_BUILD_OPTIONS:-}" \
	dpkg-buildpackage -b -us -uc) >"$out/build.log" 2>&1; then
	tail -n 40 "$out/build.log" >&2
	echo "deb: dpkg-buildpackage failed (whole log: $out/build.log)" >&2
	exit 1
fi
rm -rf "$src"

arch=$(dpkg --print-architecture)
deb=$out/strata_${VERSION}_$arch.deb
[ -f "$deb" ] || {
	echo "deb: $deb was not built" >&2
	exit 1
}
dpkg-deb -I "$deb" | sed -n 's/^ \(Package\|Version\|Architecture\|Depends\|Installed-Size\):/deb:   \1:/p'

if [ "${LINTIAN:-1}" != 0 ]; then
	if ! command -v lintian >/dev/null; then
		echo "deb: lintian is missing (apt-get install lintian); LINTIAN=0 builds without it" >&2
		exit 1
	fi
	echo "deb: lintian $out/strata_${VERSION}_$arch.changes"
	# as root lintian wants --allow-root; errors fail, warnings are shown
	if ! lintian --allow-root --fail-on error "$out/strata_${VERSION}_$arch.changes" |
		tee "$out/lintian.log" | sed 's/^/deb:   /'; then
		echo "deb: lintian found errors (or failed): $out/lintian.log" >&2
		exit 1
	fi
fi
echo "deb: $deb"
