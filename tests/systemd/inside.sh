#!/bin/bash
# Runs as a oneshot unit inside the systemd-nspawn container of run-nspawn.sh, after
# multi-user.target: checks tierd under a real systemd, then ends the container with
# `systemctl exit STATUS` (nspawn's exit status is the verdict). Lines go to /out/log.
set -u
exec >>/out/log 2>&1
sock=/run/tierd/tierd.sock
say() { echo "inside: $*"; }
fail() {
	say "FAIL: $*"
	systemctl status --no-pager tierd.socket tierd.service 2>&1 | sed 's/^/  /'
	journalctl -u tierd --no-pager | tail -40 | sed 's/^/  journal: /'
	systemctl exit 1
	exit 1
}
active() { [ "$(systemctl is-active "$1")" = active ]; }

# The eBPF sampler is on by default (tierd.conf(5)); named here all the same, checked in 3c.
mkdir -p /etc/tierd
printf '[sampling]\nbpf = yes\n' >/etc/tierd/tierd.conf

# 1. Socket activation: the socket listens, the service starts with the first client.
active tierd.socket || fail "tierd.socket is not active"
active tierd.service && fail "tierd.service runs before any client connected"
[ "$(stat -c '%a %G' $sock)" = "660 tierd" ] || fail "socket mode/group: $(stat -c '%a %G' $sock)"
tier-client --socket $sock --kind shmem --mib 8 --threads 1 --ms 1500 --wait-tracked 10000 ||
	fail "a client could not attach through the socket"
active tierd.service || fail "the first client did not start tierd.service"
say "socket activation: ok"

# 2. READY and STATUS.
status=$(systemctl show -p StatusText --value tierd.service)
[ -n "$status" ] || fail "no STATUS= text"
echo "$status" | grep -q "client(s), .* segment(s), .* policy hotness (enforce)" ||
	fail "STATUS= is not the one-line summary: $status"
say "STATUS=$status"

# 3. Reload applies a config change (RELOADING=1 ... READY=1 around it).
mkdir -p /etc/tierd
printf '[sampling]\nepoch_ms = 40\nbpf = yes\n' >/etc/tierd/tierd.conf
systemctl reload tierd.service || fail "systemctl reload failed"
tierctl --socket $sock status --json | grep -q '"epoch_ms":40' || fail "the reload did not apply"
say "reload: ok"

# 3b. Operating it: metrics, switching the policy, recording, all under the hardened unit.
tierctl --socket $sock metrics | grep -q '^tierd_faults_total ' || fail "tierctl metrics"
tierctl --socket $sock policy set none >/dev/null || fail "tierctl policy set none"
tierctl --socket $sock policy | grep -q 'policy none' || fail "the policy did not switch"
tierctl --socket $sock policy set hotness >/dev/null || fail "tierctl policy set hotness"
tierctl --socket $sock record /tmp/t.trc --max-mib 1 >/dev/null || fail "tierctl record"
sleep 0.3
tierctl --socket $sock stop >/dev/null || fail "tierctl stop"
[ "$(head -c 8 /tmp/t.trc)" = TIERDTRC ] || fail "the recorded trace has no header"
say "metrics, policy, record: ok"

# 3c. The eBPF page-fault sampler runs under the hardened unit (CAP_BPF + CAP_PERFMON, bpf in the
# syscall filter) and counted the first client's faults.
js=$(tierctl --socket $sock status --json)
echo "$js" | grep -q '"page_fault":"on"' ||
	fail "the eBPF sampler is off: $(echo "$js" | grep -o '"samplers":{[^}]*}')"
echo "$js" | grep -q '"samplers":{[^}]*"samples":[1-9]' || fail "the eBPF sampler counted nothing"
say "eBPF sampler: ok"

# 3d. What tierd kept of the unit's capabilities, read from the kernel: the unit's four in the
# effective and permitted sets, nothing inheritable or ambient, no_new_privs.
pid=$(systemctl show -p MainPID --value tierd.service)
want=$(printf '%016x' $(((1 << 19) | (1 << 23) | (1 << 38) | (1 << 39))))
caps=$(grep -E '^(CapPrm|CapEff|CapInh|CapAmb|NoNewPrivs):' /proc/"$pid"/status | tr -s '\t\n' '  ')
[ "$caps" = "CapInh: 0000000000000000 CapPrm: $want CapEff: $want CapAmb: 0000000000000000 NoNewPrivs: 1 " ] ||
	fail "tierd's capabilities: $caps (want $want in CapPrm and CapEff)"
say "privileges: $caps"

# 4. A main loop that stops making progress is killed by the watchdog and restarted, and the
# socket serves on.
pid=$(systemctl show -p MainPID --value tierd.service)
kill -STOP "$pid"
for _ in $(seq 300); do
	new=$(systemctl show -p MainPID --value tierd.service)
	[ "$new" != "$pid" ] && [ "$new" != 0 ] && active tierd.service && break
	sleep 0.1
done
[ "$new" != "$pid" ] && [ "$new" != 0 ] || fail "the watchdog did not restart a stopped tierd"
restarts=$(systemctl show -p NRestarts --value tierd.service)
say "watchdog: pid $pid stopped, restarted as $new (NRestarts=$restarts)"
tier-client --socket $sock --kind shmem --mib 8 --threads 1 --ms 1000 --wait-tracked 10000 ||
	fail "no client could attach after the restart"

# 5. The journal has tierd's own lines.
journalctl -u tierd --no-pager | grep -q "tierd ready" || fail "tierd's log is not in the journal"
journalctl -u tierd --no-pager | grep -qi "watchdog" || fail "the journal does not show the watchdog"
# Structured fields: the client being served, and where in the code.
journalctl -u tierd -o verbose --no-pager | grep -q '^    TIERD_CLIENT_PID=' ||
	fail "no TIERD_CLIENT_PID field in the journal"
journalctl -u tierd -o verbose --no-pager | grep -q '^    CODE_FUNC=' ||
	fail "no CODE_FUNC field in the journal"
say "journal: ok"
say PASS
systemctl exit 0
