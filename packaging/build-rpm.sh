#!/bin/bash
# build-rpm.sh - `make rpm`: an RPM of the working tree from packaging/rpm/strata.spec.
#
# Makes $BUILD/rpm/SOURCES/strata-VERSION.tar.gz from the tree (without build/ and
# .git) and runs rpmbuild -bb with _topdir $BUILD/rpm. On Debian (package `rpm`)
# there is no RPM database of the build dependencies, so it passes --nodeps (the
# Debian build dependencies are what deps.sh installs) and builds no debuginfo
# package (Debian's rpm lacks find-debuginfo). RPMS end up in $BUILD/rpm/RPMS/ARCH/.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build}
VERSION=${VERSION:-$(sed -n 's/^#define STRATA_VERSION "\(.*\)"$/\1/p' core/ovl.h)}
top=$(realpath -m "$BUILD/rpm")
spec=packaging/rpm/strata.spec

command -v rpmbuild >/dev/null || {
	echo "rpm: rpmbuild is missing (apt-get install rpm, or make deps)" >&2
	exit 1
}
specv=$(sed -n 's/^Version:[[:space:]]*//p' "$spec")
if [ "$specv" != "$VERSION" ]; then
	echo "rpm: $spec is at $specv, core/ovl.h at $VERSION: update Version (and %changelog)" >&2
	exit 1
fi

rm -rf "$top"
mkdir -p "$top/SOURCES" "$top/SPECS"
tar --exclude=./build --exclude="./${BUILD#./}" --exclude=./.git --exclude=./debian \
	--transform="s|^\./|strata-$VERSION/|" -czf "$top/SOURCES/strata-$VERSION.tar.gz" .
cp "$spec" "$top/SPECS/"

nodeps=()
debuginfo=()
if [ -r /etc/debian_version ]; then
	nodeps=(--nodeps)
	debuginfo=(--define "debug_package %{nil}")
fi
echo "rpm: rpmbuild -bb $spec (log: $top/build.log)"
if ! rpmbuild -bb "${nodeps[@]}" "${debuginfo[@]}" --define "_topdir $top" \
	--define "_smp_mflags -j$(nproc)" "$top/SPECS/strata.spec" >"$top/build.log" 2>&1; then
	tail -n 40 "$top/build.log" >&2
	echo "rpm: rpmbuild failed (whole log: $top/build.log)" >&2
	exit 1
fi
for r in "$top"/RPMS/*/strata-"$VERSION"-*.rpm; do
	[ -f "$r" ] || {
		echo "rpm: no RPM was built (see $top/build.log)" >&2
		exit 1
	}
	echo "rpm: $r"
	rpm -qp --requires "$r" 2>/dev/null | sed 's/^/rpm:   requires /'
done
