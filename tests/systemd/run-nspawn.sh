#!/bin/bash
# make check-systemd: tierd's units under a real systemd. This machine's PID 1 is not systemd, so
# `systemd-nspawn -b` boots one on an overlay of this machine's own root (nothing of the host is
# changed): tierd.socket is enabled, and tests/systemd/inside.sh runs as a oneshot unit after
# multi-user.target (socket activation, READY/STATUS, reload, watchdog restart, journal) and
# ends the container with its verdict. Recipe: ../shared/design/SYSTEMD.md. Needs root and
# systemd-container. Exit: 0 pass, 1 fail, 77 skipped (said why).
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
timeout=${NSPAWN_TIMEOUT:-240}
skip() { echo "check-systemd: skipped: $*"; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "needs root"
command -v systemd-nspawn >/dev/null || skip "no systemd-nspawn (apt-get install systemd-container)"
[ "$(cat /proc/1/comm)" != systemd ] || skip "PID 1 is systemd here: nspawn would need a delegated scope (untested)"
[ -e /dev/userfaultfd ] || skip "no /dev/userfaultfd"
for b in tierd tierctl tests/helpers/tier-client; do
	[ -x "$BUILD/$b" ] || { echo "check-systemd: $BUILD/$b missing (make all)" >&2; exit 1; }
done

W=$(mktemp -d /tmp/tierd-nspawn.XXXXXX)
cg=tierd-nspawn-$$
cleanup() {
	mountpoint -q "$W/root" && umount "$W/root"
	for h in unified systemd; do
		# nspawn leaves payload/ and supervisor/ below the cgroup it ran in.
		[ -d /sys/fs/cgroup/$h/$cg ] &&
			find /sys/fs/cgroup/$h/$cg -depth -type d -exec rmdir {} + 2>/dev/null
	done
	rm -rf "$W"
}
trap cleanup EXIT
mkdir -p "$W/upper" "$W/work" "$W/root" "$W/out"
mount -t overlay overlay -o "lowerdir=/,upperdir=$W/upper,workdir=$W/work" "$W/root"
R=$W/root

install -m 0755 "$BUILD/tierd" "$R/usr/sbin/tierd"
install -m 0755 "$BUILD/tierctl" "$R/usr/bin/tierctl"
install -m 0755 "$BUILD/tests/helpers/tier-client" "$R/usr/local/bin/tier-client"
install -D -m 0755 tests/systemd/inside.sh "$R/usr/local/lib/tierd-test/inside.sh"
u=$R/etc/systemd/system
sed 's|@SBINDIR@|/usr/sbin|g' systemd/tierd.service.in >"$u/tierd.service"
install -m 0644 systemd/tierd.socket "$u/tierd.socket"
install -D -m 0644 systemd/tierd.sysusers "$R/usr/lib/sysusers.d/tierd.conf"
rm -f "$R/etc/tierd/tierd.conf"
# A short watchdog, so a stopped main loop is noticed within the test.
install -d "$u/tierd.service.d"
printf '[Service]\nWatchdogSec=2s\n' >"$u/tierd.service.d/test.conf"
install -d "$u/sockets.target.wants" "$u/multi-user.target.wants"
ln -sf ../tierd.socket "$u/sockets.target.wants/tierd.socket"
cat >"$u/tierd-test.service" <<'UNIT'
[Unit]
Description=tierd under systemd: the checks
After=multi-user.target tierd.socket

[Service]
Type=oneshot
ExecStart=/usr/local/lib/tierd-test/inside.sh
UNIT
ln -sf ../tierd-test.service "$u/multi-user.target.wants/tierd-test.service"
# Host services that would start inside and have nothing to do there.
for s in postgresql.service console-getty.service; do ln -sf /dev/null "$u/$s"; done

echo "check-systemd: booting systemd in a container ($(systemd-nspawn --version | head -1))"
# nspawn drops CAP_BPF/CAP_PERFMON and filters bpf(2) and perf_event_open(2) by default: let them
# through, so the unit's own CapabilityBoundingSet= and SystemCallFilter= decide, as on a host.
t0=${EPOCHREALTIME/./}
set +e
(
	for h in unified systemd; do
		mkdir -p /sys/fs/cgroup/$h/$cg && echo $BASHPID >/sys/fs/cgroup/$h/$cg/cgroup.procs
	done
	SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 SYSTEMD_NSPAWN_API_VFS_WRITABLE=yes \
		exec timeout -k 10 "$timeout" systemd-nspawn -q -D "$R" -M "tierdtest-$$" \
		--register=no --keep-unit --bind=/dev/userfaultfd --bind="$W/out:/out" \
		--capability=CAP_BPF,CAP_PERFMON --system-call-filter='bpf perf_event_open' -b
) >"$W/out/console" 2>&1
rc=$?
set -e
t1=${EPOCHREALTIME/./}
cat "$W/out/log" 2>/dev/null || true
if [ $rc -ne 0 ]; then
	echo "check-systemd: FAILED (container exit status $rc); its console:"
	tail -30 "$W/out/console"
	exit 1
fi
grep -q "inside: PASS" "$W/out/log" || { echo "check-systemd: FAILED: no verdict"; exit 1; }
d=$(((t1 - t0) / 100000)) # tenths of a second
echo "check-systemd: passed in $((d / 10)).$((d % 10)) s"
