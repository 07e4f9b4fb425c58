# Shared by tests/pg/run.sh and tests/pg/bench.sh (sourced): a throw-away PostgreSQL cluster as user
# postgres in a temp dir (huge_pages=on, shared_buffers in 2 MiB huge pages reserved here and given
# back at exit), a private tierd, and helpers. The sourcing script sets PG_WHO (its name in
# messages) and may set PG_SHARED_BUFFERS; it calls pg_setup.
BUILD=${BUILD:-build}
SCALE=${PG_SCALE:-10}
HUGE_KB=2048

say() { echo "${PG_WHO:-tests/pg}: $*"; }
skip() {
	if [ "${TIERD_PG_REQUIRED:-0}" = 1 ]; then
		say "FAILED: $* (TIERD_PG_REQUIRED=1)"
		exit 1
	fi
	say "SKIPPED: $*"
	exit 77
}
failures=0
fail() { say "FAIL: $*"; failures=$((failures + 1)); }
ok() { say "ok: $*"; }
die() { say "FAIL: $*"; failures=$((failures + 1)); exit 1; }

[ "$(id -u)" = 0 ] || skip "needs root (huge pages, tierd, runuser)"
# PGBIN: the server's bin directory (default: the newest /usr/lib/postgresql/N/bin).
[ -n "${PGBIN:-}" ] || PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -n "$PGBIN" ] && [ -x "$PGBIN/postgres" ] && [ -x "$PGBIN/pgbench" ] ||
	skip "no PostgreSQL server here (apt-get install postgresql postgresql-contrib)"
id postgres >/dev/null 2>&1 || skip "no postgres user"
for f in tierd tierctl libtier-preload.so; do
	[ -e "$BUILD/$f" ] || die "$BUILD/$f is missing: build first (make)"
done
TIERD_BIN=$(realpath "$BUILD/tierd")
TIERCTL=$(realpath "$BUILD/tierctl")
[ "$(grep -s Hugepagesize /proc/meminfo | awk '{print $2}')" = $HUGE_KB ] ||
	skip "the default huge page size is not 2 MiB"
# PostgreSQL runs as postgres: userfaultfd(2) needs vm.unprivileged_userfaultfd=1, or tierd hands
# out /dev/userfaultfd.
[ -e /dev/userfaultfd ] || [ "$(cat /proc/sys/vm/unprivileged_userfaultfd 2>/dev/null)" = 1 ] ||
	skip "no /dev/userfaultfd and vm.unprivileged_userfaultfd=0: PostgreSQL (user postgres) cannot be tracked"

# runuser where there is one; setpriv in the QEMU guest (busybox has neither, run-vm.sh copies setpriv).
if command -v runuser >/dev/null; then
	asuser() { runuser -u postgres -- "$@"; }
else
	asuser() { setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; }
fi
pgctl() { asuser env "${pgenv[@]}" "$PGBIN/pg_ctl" -D "$data" -l "$pgdir/pg.log" -w -t 60 "$@" >/dev/null; }
# A fast shutdown; when it does not finish, says which server processes are stuck where (kernel
# stack, and the user stack when gdb is here), ends the server with an immediate stop and fails.
pgstop() {
	pgctl stop -m fast && return 0
	say "PostgreSQL did not stop within 60 s; its processes:"
	for p in $(pgrep -u postgres -f "$PGBIN/postgres|postgres:" 2>/dev/null); do
		say "  $p $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | cut -c1-80) state=$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null) wchan=$(cat "/proc/$p/wchan" 2>/dev/null)"
		sed 's/^/      k: /' "/proc/$p/stack" 2>/dev/null | head -8
		command -v gdb >/dev/null &&
			timeout 30 gdb -q -batch -p "$p" -ex "thread apply all bt 12" 2>/dev/null | grep -E '^(#|Thread)' | sed 's/^/      /' | head -40
	done
	asuser "$PGBIN/pg_ctl" -D "$data" -m immediate -w -t 30 stop >/dev/null 2>&1
	return 1
}
q() { asuser timeout 120 "$PGBIN/psql" -h "$pgdir/run" -p $port -d postgres -XAtq -v ON_ERROR_STOP=1 -c "$1"; }
pgb() { asuser timeout 300 "$PGBIN/pgbench" -h "$pgdir/run" -p $port "$@" postgres; }
huge_free() { awk '/HugePages_Free/ {print $2}' /proc/meminfo; }
# Huge pages taken: allocated or reserved by a mapping.
huge_used() { awk '/HugePages_Total/ {t=$2} /HugePages_Free/ {f=$2} /HugePages_Rsvd/ {r=$2} END {print t-f+r}' /proc/meminfo; }

cleanup() {
	[ -f "$data/postmaster.pid" ] && asuser "$PGBIN/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1
	[ -n "$tierd_pid" ] && kill -CONT "$tierd_pid" 2>/dev/null && kill "$tierd_pid" 2>/dev/null &&
		wait "$tierd_pid" 2>/dev/null
	echo "$old_nr" >$nr_file
	if [ "$failures" -ne 0 ] || [ "${KEEP:-0}" = 1 ]; then
		say "logs: $tmp (postgres: pg/pg.log, tierd: tierd.log)"
	else
		rm -rf "$tmp"
	fi
}

tierd_start() {
	# shellcheck disable=SC2086 # PG_TIERD_ARGS: extra options, split on blanks
	"$TIERD_BIN" --socket "$sock" ${PG_TIERD_ARGS---epoch-ms 50} >>"$tmp/tierd.log" 2>&1 &
	tierd_pid=$!
	for _ in $(seq 100); do
		[ -S "$sock" ] && "$TIERCTL" --socket "$sock" status >/dev/null 2>&1 && break
		sleep 0.05
	done
	chmod 666 "$sock" # PostgreSQL connects as postgres
}
tierd_kill() {
	kill -9 "$tierd_pid" 2>/dev/null
	wait "$tierd_pid" 2>/dev/null
	tierd_pid=
}
tctl() { "$TIERCTL" --socket "$sock" "$@"; }
# The first segment (the buffer pool's: the only one): "ID ATTACHMENTS" of tierctl segments, or nothing.
segment() { tctl segments 2>/dev/null | awk 'NR == 2 {print $1, $5}'; }
nsegments() { tctl segments 2>/dev/null | awk 'NR > 1' | wc -l; }
# Waits until the buffer pool's segment has at least $1 attachments; prints "ID ATTACHMENTS".
wait_attached() {
	local s
	for _ in $(seq 200); do
		s=$(segment)
		[ -n "$s" ] && [ "$(nsegments)" = 1 ] && [ "${s#* }" -ge "$1" ] && { echo "$s"; return 0; }
		sleep 0.1
	done
	echo "$s"
	return 1
}

wait_no_segment() {
	for _ in $(seq 100); do
		[ "$(nsegments)" = 0 ] && return 0
		sleep 0.05
	done
	return 1
}
hugeinfo() { grep -E "HugePages_(Total|Free|Rsvd|Surp)" /proc/meminfo | tr -s ' \n' ' '; }

# For the benches (tests/pg/bench*.sh), which set BENCH_NAME, RESULTS, WHERE and COMMIT.
tps_of() { awk '/^tps/ {print $3; exit}' "$1"; }
median() { tr ' ' '\n' | awk 'NF' | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
# One JSON line (ARCHITECTURE.md §6): emit METRIC VALUE BASELINE UNIT N SPREAD NOTE.
emit() {
	awk -v b="$BENCH_NAME" -v m="$1" -v v="$2" -v base="$3" -v u="$4" -v n="$5" -v s="$6" -v note="$7" \
		-v w="$WHERE" -v c="$COMMIT" 'BEGIN {
		printf "{\"bench\":\"%s\",\"metric\":\"%s\",\"value\":%.6g,\"baseline\":%.6g,\"ratio\":%.4g,", b, m, v, base, base ? v / base : 0
		printf "\"unit\":\"%s\",\"n\":%d,\"spread\":\"%s\",\"where\":\"%s\",\"commit\":\"%s\",\"note\":\"%s\"}\n", u, n, s, w, c, note
	}' >>"$RESULTS"
	say "$1: $(awk -v v="$2" -v b="$3" 'BEGIN {printf "%.6g vs %.6g, ratio %.3f", v, b, b ? v / b : 0}') ($6)"
}


# Temp dir, cluster (initdb + configuration), huge page pool. Sets tmp, SHIM, pgdir, data, sock,
# port, need (huge pages of PostgreSQL's shared memory). tierd_start starts tierd.
pg_setup() {
	tmp=$(mktemp -d /tmp/tierd-pg.XXXXXX) || exit 1
	chmod 755 "$tmp"
	# The shim where user postgres can surely read it (the build tree may be in a private home).
	SHIM=$tmp/libtier-preload.so
	install -m 0755 "$BUILD/libtier-preload.so" "$SHIM"
	pgdir=$tmp/pg
	mkdir -p "$pgdir/run"
	chown -R postgres:postgres "$pgdir"
	data=$pgdir/data
	sock=$tmp/tierd.sock
	port=$((54000 + $$ % 1000))
	nr_file=/proc/sys/vm/nr_hugepages
	old_nr=$(cat $nr_file)
	tierd_pid=
	trap cleanup EXIT
	trap 'exit 130' INT TERM
	asuser "$PGBIN/initdb" -D "$data" --auth=trust -E UTF8 --no-sync >"$tmp/initdb.log" 2>&1 ||
		die "initdb failed: $(tail -3 "$tmp/initdb.log")"
	cat >>"$data/postgresql.conf" <<-EOF
	port = $port
	listen_addresses = ''
	unix_socket_directories = '$pgdir/run'
	shared_buffers = ${PG_SHARED_BUFFERS:-256MB}
	huge_pages = ${PG_HUGE_PAGES:-on}
	max_connections = 30
	fsync = off
	synchronous_commit = off
	full_page_writes = off
	restart_after_crash = on
	shared_preload_libraries = ''
	${PG_EXTRA_CONF:-}
	EOF
	need=$(asuser "$PGBIN/postgres" -D "$data" -C shared_memory_size_in_huge_pages) ||
		die "postgres -C shared_memory_size_in_huge_pages failed"
	# The pool: the buffer pool plus a little headroom, no more (a crash restart must not need two).
	want=$((need + 2))
	free=$(huge_free)
	[ "$free" -lt "$want" ] && echo $((old_nr + want - free)) >$nr_file
	[ "$(huge_free)" -ge "$want" ] || die "could not reserve $want huge pages (free: $(huge_free))"
	say "PostgreSQL $("$PGBIN/postgres" -V | awk '{print $3}'), shared memory $need huge pages, scale $SCALE"
}
