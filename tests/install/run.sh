#!/bin/bash
# make install into a temporary DESTDIR, then use what it laid out as an outside project would:
# pkg-config finds libtier, a client builds and links against the installed header and library,
# the example policy builds against the installed <tierd/policy.h>, and the units, man pages and
# example configuration are where they belong. Run by make check (check-install).
set -eu
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
dest=$(mktemp -d /tmp/tierd-install.XXXXXX)
trap 'rm -rf "$dest"' EXIT
fail() { echo "check-install: FAIL: $*" >&2; exit 1; }

make -s BUILD="$BUILD" DESTDIR="$dest" PREFIX=/usr/local install >"$dest/install.log" 2>&1 ||
	{ cat "$dest/install.log"; fail "make install"; }
for f in /usr/local/sbin/tierd /usr/local/bin/tierctl /usr/local/lib/libtier.so.1 \
	/usr/local/lib/libtier.a /usr/local/include/tierd/tier.h /usr/local/include/tierd/policy.h \
	/usr/local/lib/pkgconfig/libtier.pc /usr/local/lib/systemd/system/tierd.service \
	/usr/local/lib/systemd/system/tierd.socket /usr/local/share/man/man7/tierd-policy.7 \
	/usr/local/share/doc/tierd/tierd.conf.example; do
	[ -e "$dest$f" ] || fail "$f was not installed"
done
[ -d "$dest/usr/local/lib/tierd/policies" ] || fail "no policy module directory"
grep -q '^ExecStart=/usr/local/sbin/tierd' "$dest/usr/local/lib/systemd/system/tierd.service" ||
	fail "the unit does not start the installed tierd"

# pkg-config answers for the installed tree (paths as installed, before DESTDIR).
export PKG_CONFIG_PATH="$dest/usr/local/lib/pkgconfig"
[ "$(pkg-config --modversion libtier)" = "$(sed -n 's/^VERSION *:= *//p' Makefile)" ] ||
	fail "pkg-config --modversion libtier"
flags=$(echo $(pkg-config --cflags --libs libtier)) # one space between words
[ "$flags" = "-I/usr/local/include -L/usr/local/lib -ltier" ] || fail "pkg-config gives '$flags'"

# A client, compiled against the installed header and linked against the installed library.
cat >"$dest/client.c" <<'C'
#include <stdio.h>
#include <tierd/tier.h>
int main(void)
{
	char js[4096];
	return tier_status_json("/nonexistent/tierd.sock", js, sizeof(js)) < 0 ? 0 : 1;
}
C
cc -Wall -Wextra -Werror -I"$dest/usr/local/include" -o "$dest/client" "$dest/client.c" \
	-L"$dest/usr/local/lib" -ltier -lpthread || fail "a client does not build against the install"
LD_LIBRARY_PATH="$dest/usr/local/lib" "$dest/client" || fail "the client does not run"

# The example policy, against the installed header only.
make -s -C examples/policy-example O="$dest/ex" TIERD_INCLUDE="$dest/usr/local/include" \
	>/dev/null || fail "the example policy does not build against the installed header"
[ -f "$dest/ex/recency.so" ] || fail "no recency.so"
echo "check-install: ok (DESTDIR layout, pkg-config, a client and the example policy build against it)"
