#!/bin/bash
# PostgreSQL with huge_pages=on, unmodified, under the LD_PRELOAD shim (libtier-preload.so) and a
# private tierd: a throw-away cluster (initdb in a temp dir, shared_buffers in reserved 2 MiB huge
# pages, which this script reserves and gives back), pgbench, and checks that
#   1. the shim replaced the buffer pool's mapping and every PostgreSQL process attached to it;
#   2. tierd's hot pages are the buffers of the hot rows: pgbench reads a small range of
#      pgbench_accounts while the whole table sits in shared buffers, and the pages tierd rates
#      hot are compared with where pg_buffercache says each block lives;
#   3. a pgbench run (tpcb-like, several clients) during which tierd is SIGKILLed and restarted has
#      no error and keeps the bank's books balanced (accounts = tellers = branches = history);
#   4. a backend crash (PostgreSQL unmaps and maps its shared memory anew) leaves one segment, its
#      huge pages not held twice;
#   5. a hung tierd (SIGSTOP, while PostgreSQL runs and while it starts) and no tierd at all do not
#      stop PostgreSQL; with too few huge pages
#      PostgreSQL fails exactly as without the shim (huge_pages=on) or falls back (=try);
#   6. pg_amcheck finds the tables and indexes intact.
# Exit 0 pass, 1 fail, 77 skip (no PostgreSQL, unless TIERD_PG_REQUIRED=1 makes that a failure).
# Environment: BUILD (default build), PG_SCALE (pgbench scale, default 10).
set -u
cd "$(dirname "$0")/../.." || exit 1
PG_WHO=tests/pg
. tests/pg/lib.sh
pg_setup

tierd_start
pgenv=(LD_PRELOAD="$SHIM" TIERD_SOCKET="$sock" TIERD_PRELOAD_VERBOSE=1)
pgctl start || die "PostgreSQL did not start under the shim: $(tail -5 "$pgdir/pg.log")"

# ---- 1. replaced and attached ---------------------------------------------------------------
grep -q "libtier-preload: .*shared hugetlb mapping .* is a memfd now" "$pgdir/pg.log" ||
	fail "the shim did not replace the buffer pool's mapping (pg.log has no libtier-preload line)"
# postmaster, checkpointer, background writer, WAL writer, autovacuum and logical replication
# launchers: six processes before any client connects.
seg=$(wait_attached 6) || fail "the buffer pool's segment is not attached by 6 processes: '$seg'"
ok "segment ${seg% *}: $need huge pages, attached by ${seg#* } processes"
used_before=$(huge_used)

# ---- 2. heat where the hot rows are -----------------------------------------------------------
pgb -i -q -s "$SCALE" >"$tmp/pgbench-init.log" 2>&1 || die "pgbench -i failed: $(tail -3 "$tmp/pgbench-init.log")"
# Before any update: the hot rows are the first blocks of pgbench_accounts and nothing else.
# A fresh buffer pool, so that pg_prewarm lays pgbench_accounts out block after block.
pgstop || fail "PostgreSQL did not stop"
wait_no_segment || fail "tierd still tracks a segment after PostgreSQL stopped: $(tctl segments | tr '\n' ';')"
pgctl start || die "PostgreSQL did not start again: $(tail -5 "$pgdir/pg.log")"
seg=$(wait_attached 6) || fail "after a restart the segment is not attached by 6 processes: '$seg'"
q "create extension if not exists pg_buffercache; create extension if not exists pg_prewarm;" >/dev/null
q "select pg_prewarm('pgbench_accounts')" >/dev/null
hot_rows=$((SCALE * 4000)) # the first 4 % of the accounts
cat >"$tmp/hot.sql" <<EOF
\set aid random(1, $hot_rows)
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
EOF
chmod 644 "$tmp/hot.sql"
pgb -c 2 -j 2 -T 10 -n -f "$tmp/hot.sql" >"$tmp/pgbench-hot.log" 2>&1 &
bench=$!
# tierd's heat is what it sees now: look while the load runs.
sleep 8
seg=$(segment)
hot=$(tctl --json hot "${seg% *}") || fail "tierctl hot ${seg% *} failed"
faulted=$(tctl clients | awk 'NR > 1 && $5 > 0' | wc -l)
wait $bench || fail "pgbench (hot rows) failed: $(tail -3 "$tmp/pgbench-hot.log")"
[ "$faulted" -ge 3 ] && ok "$faulted PostgreSQL processes faulted on the buffer pool" ||
	fail "only $faulted processes faulted on the buffer pool (tierctl clients)"
# tierd's hot pages as a list of page numbers, for SQL.
ranges=$(echo "$hot" | sed -e 's/.*"hot":\[\(.*\)\],"hot_pages".*/\1/' -e 's/\],\[/ /g' -e 's/[][]//g')
list=$(for r in $ranges; do seq "${r%,*}" "${r#*,}"; done | paste -sd, -)
# Per 2 MiB page of the buffer pool: a page holding a block of the hot rows is hot; one holding
# nothing but other blocks of pgbench_accounts is cold; the rest (indexes, catalogs) are not judged.
verdict=$(q "with hotmax as (select max((ctid::text::point)[0])::bigint as blk from pgbench_accounts where aid <= $hot_rows),
	base as (select off from pg_shmem_allocations where name = 'Buffer Blocks'),
	acc as (select pg_relation_filenode('pgbench_accounts') as fn),
	bufs as (select ((select off from base) + (bufferid - 1)::bigint * 8192) / ($HUGE_KB * 1024) as page,
		relfilenode = (select fn from acc) as is_acc, relblocknumber from pg_buffercache where relfilenode is not null),
	pages as (select page, bool_or(is_acc and relblocknumber <= (select blk from hotmax)) as truth_hot,
		bool_and(is_acc and relblocknumber > (select blk from hotmax)) as truth_cold from bufs group by page),
	tierd as (select unnest(array[${list:-}]::bigint[]) as page)
	select count(*) filter (where truth_hot), count(*) filter (where truth_cold),
		count(*) filter (where truth_hot and page in (select page from tierd)),
		count(*) filter (where truth_cold and page in (select page from tierd)),
		(select count(*) from tierd) from pages")
read -r n_hot n_cold hot_hit cold_hit n_tierd <<<"${verdict//|/ }"
say "heat: $n_hot pages hold the hot rows, $n_cold only cold rows; tierd rates $n_tierd pages hot:" \
	"$hot_hit of the hot ones, $cold_hit of the cold ones ($(awk '/^tps/ {print $3; exit}' "$tmp/pgbench-hot.log") tps)"
if [ -z "$n_cold" ] || [ "$n_hot" -lt 1 ] || [ "$n_cold" -lt 10 ]; then
	fail "the buffer pool did not hold the table as planned (hot pages $n_hot, cold pages $n_cold)"
elif [ "$hot_hit" -lt $(( (n_hot + 1) / 2 )) ]; then
	fail "tierd rated only $hot_hit of the $n_hot pages holding the hot rows hot"
elif [ $((cold_hit * 10)) -gt "$n_cold" ]; then
	fail "tierd rated $cold_hit of $n_cold cold pages hot (more than 10 %)"
else
	ok "tierd's heat follows the hot rows"
fi

# ---- 3. pgbench under fire -------------------------------------------------------------------
pgb -c 4 -j 2 -T 12 -n >"$tmp/pgbench-tpcb.log" 2>&1 &
bench=$!
sleep 3
attached_mid=$(segment)
tierd_kill # mid-run: every process's faults must be released by the control threads
sleep 1
tierd_start
wait $bench
rc=$?
tps=$(awk '/^tps/ {print $3; exit}' "$tmp/pgbench-tpcb.log")
failed_tx=$(awk '/number of failed transactions/ {print $5}' "$tmp/pgbench-tpcb.log")
if [ $rc -ne 0 ] || [ "${failed_tx:-x}" != 0 ]; then
	fail "pgbench (tpcb-like, tierd killed mid-run) exit $rc, failed transactions '${failed_tx:-?}': $(tail -5 "$tmp/pgbench-tpcb.log")"
else
	ok "pgbench tpcb-like: $tps tps, 0 failed transactions, tierd SIGKILLed and restarted mid-run (attached before: ${attached_mid#* })"
fi
books=$(q "select (select sum(abalance) from pgbench_accounts) || ' ' || (select sum(tbalance) from pgbench_tellers)
	|| ' ' || (select sum(bbalance) from pgbench_branches) || ' ' || (select coalesce(sum(delta), 0) from pgbench_history)
	|| ' ' || (select count(*) from pgbench_history)")
read -r a t b h n <<<"$books"
if [ -n "$n" ] && [ "$n" -gt 0 ] && [ "$a" = "$t" ] && [ "$t" = "$b" ] && [ "$b" = "$h" ]; then
	ok "books balanced after $n transactions: accounts = tellers = branches = history = $a"
else
	fail "books do not balance: accounts tellers branches history count = $books"
fi
seg=$(wait_attached 6) || fail "PostgreSQL's processes did not re-attach to the restarted tierd: '$seg'"
ok "re-attached to the restarted tierd: segment ${seg% *}, ${seg#* } processes"

# ---- 4. a backend crash: PostgreSQL maps its shared memory anew ------------------------------
# How many distinct memfds of the shim process $1 maps.
memfds() { awk '/memfd:tierd-preload/ {print $5}' "/proc/$1/maps" 2>/dev/null | sort -u | wc -l; }
asuser "$PGBIN/psql" -h "$pgdir/run" -p $port -d postgres -XAtq -c "select pg_sleep(60)" >/dev/null 2>&1 &
victim_psql=$!
for _ in $(seq 50); do
	victim=$(q "select pid from pg_stat_activity where query like 'select pg_sleep%' and pid <> pg_backend_pid()")
	[ -n "$victim" ] && break
	sleep 0.1
done
old_seg=$(segment)
kill -9 "$victim"
wait $victim_psql 2>/dev/null
restarted=
for _ in $(seq 300); do
	grep -q "all server processes terminated; reinitializing" "$pgdir/pg.log" &&
		asuser "$PGBIN/pg_isready" -q -h "$pgdir/run" -p $port && { restarted=1; break; }
	sleep 0.1
done
if [ -z "$restarted" ]; then
	fail "PostgreSQL did not come back after a backend crash ($(hugeinfo)): $(tail -5 "$pgdir/pg.log")"
else
	new_seg=$(wait_attached 5)
	if [ -z "$new_seg" ] || [ "${new_seg% *}" = "${old_seg% *}" ] || [ "$(nsegments)" != 1 ]; then
		fail "after the crash restart tierd tracks '$(tctl segments | tr '\n' ';')' (before: segment ${old_seg% *})"
	elif [ "$(memfds "$tierd_pid")" != 1 ] || [ "$(memfds "$(head -1 "$data/postmaster.pid")")" != 1 ]; then
		# The old memfd lives on while anyone maps it: then its huge pages are held twice.
		fail "after the crash restart tierd maps $(memfds "$tierd_pid") of the shim's memfds, the postmaster $(memfds "$(head -1 "$data/postmaster.pid")") (want 1 each)"
	else
		ok "crash restart: segment ${old_seg% *} gone, ${new_seg% *} attached by ${new_seg#* } processes; one buffer pool mapped (huge pages taken: $(huge_used), before: $used_before)"
	fi
fi
pgb -S -c 2 -T 2 -n >"$tmp/pgbench-after-crash.log" 2>&1 || fail "pgbench after the crash restart failed"

# ---- 5. a hung tierd, no tierd, too few huge pages ------------------------------------------
kill -STOP "$tierd_pid"
if pgb -S -c 2 -j 2 -T 5 -n >"$tmp/pgbench-stopped.log" 2>&1 &&
	grep -q "number of failed transactions: 0" "$tmp/pgbench-stopped.log"; then
	ok "tierd stopped (SIGSTOP): pgbench -S $(awk '/^tps/ {print $3; exit}' "$tmp/pgbench-stopped.log") tps, no error"
else
	fail "pgbench failed while tierd was stopped: $(tail -3 "$tmp/pgbench-stopped.log")"
fi
kill -CONT "$tierd_pid"
pgstop || fail "PostgreSQL did not stop"
# A tierd that is stopped while PostgreSQL starts (it accepts connections and never answers).
tierd_kill
tierd_start
kill -STOP "$tierd_pid"
if pgctl start && pgb -S -c 2 -T 2 -n >"$tmp/pgbench-start-stopped.log" 2>&1; then
	ok "tierd stopped (SIGSTOP) while PostgreSQL starts: it starts and serves"
else
	fail "PostgreSQL did not start or serve while tierd was stopped: $(tail -5 "$pgdir/pg.log")"
fi
kill -CONT "$tierd_pid"
seg=$(wait_attached 6) && ok "attached once tierd continued: segment ${seg% *}, ${seg#* } processes" ||
	fail "PostgreSQL's processes did not attach after tierd continued: '$seg'"
pgstop || fail "PostgreSQL did not stop"
tierd_kill
pgctl start || fail "PostgreSQL did not start under the shim without tierd: $(tail -5 "$pgdir/pg.log")"
pgb -S -c 2 -T 2 -n >"$tmp/pgbench-notierd.log" 2>&1 && ok "no tierd: PostgreSQL starts and serves" ||
	fail "pgbench failed without tierd"
pgstop || fail "PostgreSQL did not stop"
# Too few huge pages: the same failure as without the shim, and huge_pages=try falls back.
[ "$(huge_free)" -ge "$need" ] || fail "huge pages not given back after PostgreSQL stopped ($(huge_free) free, need $need)"
echo $(( $(cat $nr_file) - $(huge_free) + need / 2 )) >$nr_file
# (If PostgreSQL did start after all, the timeout ends it.)
asuser timeout 60 "$PGBIN/postgres" -D "$data" >"$tmp/nohuge-plain.log" 2>&1
asuser env LD_PRELOAD="$SHIM" TIERD_SOCKET="$sock" timeout 60 "$PGBIN/postgres" -D "$data" >"$tmp/nohuge-shim.log" 2>&1
plain=$(grep -o "FATAL: .*" "$tmp/nohuge-plain.log" | head -1)
shim=$(grep -o "FATAL: .*" "$tmp/nohuge-shim.log" | head -1)
if [ -n "$plain" ] && [ "$plain" = "$shim" ]; then
	ok "too few huge pages (huge_pages=on): the same failure with and without the shim: $plain"
else
	fail "too few huge pages: without the shim '$plain', with it '$shim'"
fi
sed -i 's/^huge_pages = on/huge_pages = try/' "$data/postgresql.conf"
if pgctl start && pgb -S -c 1 -T 1 -n >/dev/null 2>&1; then
	ok "huge_pages=try with too few huge pages: PostgreSQL falls back and serves under the shim"
else
	fail "huge_pages=try did not fall back under the shim: $(tail -5 "$pgdir/pg.log")"
fi

# ---- 6. the data ------------------------------------------------------------------------------
if asuser "$PGBIN/pg_amcheck" -h "$pgdir/run" -p $port -d postgres --install-missing --heapallindexed \
	>"$tmp/amcheck.log" 2>&1; then
	ok "pg_amcheck: tables and indexes intact"
else
	fail "pg_amcheck: $(tail -5 "$tmp/amcheck.log")"
fi
pgstop || fail "PostgreSQL did not stop"

if [ "$failures" -ne 0 ]; then
	say "$failures check(s) FAILED"
	exit 1
fi
say "all checks passed"
exit 0
