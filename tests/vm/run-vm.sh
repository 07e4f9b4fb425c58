#!/bin/bash
# Runs a command inside a QEMU guest with several NUMA nodes (this host has one; the recipe was
# measured first, see TESTBED.md in the design notes). The guest boots Debian 12's kernel from the
# apt archive and an initramfs holding busybox, the project's binaries from $BUILD and the repo's
# scripts; the command's output comes back on the serial console and its exit status becomes ours.
#
#   tests/vm/run-vm.sh [--nodes 2|3] [--cpus N] [--timeout SEC] [--mem-mib M0,M1[,M2]] [--distances D01[,D02,D12]] [--hotplug-last] -- CMD [ARGS...]
#
# --distances sets the SLIT distances from node 0 to the others and between the two slow nodes
# (default 20 for two nodes, 20,30,20 for three). --hotplug-last gives the last node no boot
# memory: its memory is a pc-dimm that the guest kernel adds through ACPI memory hotplug while it
# boots and onlines into ZONE_MOVABLE, so every memory block of that node can be offlined (and
# onlined again) from inside the guest. Boot memory cannot be: the node's memmap and per-node
# kernel data sit in its first and last blocks (offlining them is -EBUSY). Only the last node can
# be DIMM-only: QEMU's SRAT has no entry for a node without boot memory except the last one,
# which gets the hotplug range (a DIMM given to a middle node landed in node 0).
#
# CMD runs as root in /work/repo (the repo's layout, so $BUILD/... paths work) with BUILD set as
# here. Exit status: CMD's, 124 on timeout, 125 when the guest did not boot or died before CMD
# finished. Environment:
#   BUILD           build directory inside the repo (default build)
#   VM_CACHE        kernel cache (default build/vm-cache, shared by all build flavours)
#   VM_KERNEL       boot this kernel (ELF vmlinux or bzImage) instead of the apt one
#   VM_FLAVOUR      Debian kernel flavour metapackage (default linux-image-cloud-amd64)
#   VM_ENV          names of extra variables to pass into the guest (space separated; BUILD,
#                   TEST_TIMEOUT, GUEST_TESTS, CHAOS_SEED and CHAOS_VM_CYCLES always go in)
#   VM_HOST_TOOLS   extra host programs to copy into the guest (space separated)
#   VM_APPEND       extra kernel command line
#   VM_KEEP_INITRD  path: keep a copy of the initramfs there (debugging)
#   VM_WITH_PG      1: add the host's PostgreSQL server (the newest /usr/lib/postgresql/N: postgres,
#                   initdb, pg_ctl, pgbench, psql, pg_isready, its lib/ without the LLVM JIT,
#                   /usr/share/postgresql/N, the UTC zone), $BUILD/libtier-preload.so and a
#                   postgres user (uid/gid 101); in the guest PGBIN names the bin directory
set -euo pipefail

die() { echo "vm: $*" >&2; exit 125; }
usage() {
	sed -n 's|^#   \(tests/vm/run-vm.sh \)|usage: \1|p' "$0" >&2
	exit 2
}

nodes=2 cpus=2 timeout=1800 mem= dist= hotplug=0
while [ $# -gt 0 ]; do
	case $1 in
	--nodes) nodes=$2; shift 2 ;;
	--cpus) cpus=$2; shift 2 ;;
	--timeout) timeout=$2; shift 2 ;;
	--mem-mib) mem=$2; shift 2 ;;
	--distances) dist=$2; shift 2 ;;
	--hotplug-last) hotplug=1; shift ;;
	--) shift; break ;;
	-h | --help) usage ;;
	*) echo "vm: unknown option $1" >&2; usage ;;
	esac
done
[ $# -gt 0 ] || usage
case $nodes in 2 | 3) ;; *) echo "vm: --nodes must be 2 or 3" >&2; exit 2 ;; esac
[[ $cpus =~ ^[1-9][0-9]*$ && $timeout =~ ^[1-9][0-9]*$ ]] || usage
IFS=, read -ra mib <<<"${mem:-1024,1024,1024}"
[ ${#mib[@]} -ge "$nodes" ] || { echo "vm: --mem-mib needs $nodes sizes" >&2; exit 2; }
if [ "$nodes" -eq 2 ]; then
	IFS=, read -ra dists <<<"${dist:-20}"
else
	IFS=, read -ra dists <<<"${dist:-20,30,20}"
fi
[ ${#dists[@]} -eq $((nodes == 2 ? 1 : 3)) ] || { echo "vm: --distances needs $((nodes == 2 ? 1 : 3)) values" >&2; exit 2; }
for d in "${dists[@]}"; do
	[[ $d =~ ^[0-9]+$ ]] && [ "$d" -gt 10 ] && [ "$d" -lt 255 ] ||
		{ echo "vm: distance $d is not in 11..254" >&2; exit 2; }
done

repo=$(cd "$(dirname "$0")/../.." && pwd -P)
cd "$repo"
BUILD=${BUILD:-build}
# The guest has the repo at /work/repo, so BUILD must name a directory inside the repo.
case $BUILD in
/*) [[ $(realpath -m "$BUILD") == "$repo"/* ]] || die "BUILD=$BUILD is outside the repo"
    BUILD=$(realpath -m --relative-to="$repo" "$BUILD") ;;
esac
[ -x "$BUILD/tierd" ] || die "$BUILD/tierd missing: run make first"
cache=${VM_CACHE:-build/vm-cache}
flavour=${VM_FLAVOUR:-linux-image-cloud-amd64}
guest_repo=/work/repo
prefix='VMOUT| ' # every line of CMD's output carries it; the rest of the console is the kernel's

tmp=$(mktemp -d /tmp/tierd-vm.XXXXXX)
qpid=
cleanup() {
	if [ -n "$qpid" ] && kill -0 "$qpid" 2>/dev/null; then
		kill "$qpid" 2>/dev/null || true
		wait "$qpid" 2>/dev/null || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'echo "vm: interrupted" >&2; exit 130' INT
trap 'echo "vm: terminated" >&2; exit 143' TERM

# Quotes $1 for a POSIX shell.
q() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

# Reads a little-endian unsigned integer of $2 bytes at offset $3 of file $1.
rd() { od -An -tu"$2" -j "$3" -N "$2" "$1" | tr -d ' \n'; }

# Writes the ELF vmlinux inside bzImage $1 to $2. The setup header (boot protocol >= 2.08) gives
# the compressed payload's offset from the protected-mode code and its length; the payload is a
# compressed ELF. Booting the ELF directly (PVH entry) skips the decompressor, which is slow under
# emulation.
extract_vmlinux() {
	local bz=$1 out=$2 sects start len magic trail=4 want
	local -a unpack
	[ "$(dd if="$bz" bs=1 skip=$((0x202)) count=4 status=none)" = HdrS ] || return 1
	[ "$(rd "$bz" 2 $((0x206)))" -ge $((0x208)) ] || return 1
	sects=$(rd "$bz" 1 $((0x1f1)))
	[ "$sects" -eq 0 ] && sects=4
	start=$(((sects + 1) * 512 + $(rd "$bz" 4 $((0x248)))))
	len=$(rd "$bz" 4 $((0x24c)))
	magic=$(od -An -tx1 -j "$start" -N 6 "$bz" | tr -d ' \n')
	# Except for gzip, the kernel build appends the uncompressed size (le32) to the stream; it
	# is cut off before decompressing and used to check the result.
	case $magic in
	1f8b*) unpack=(gzip -dc); trail=0 ;;
	fd377a585a00) unpack=(xz -dc) ;;
	28b52ffd*) unpack=(zstd -dcq) ;;
	02214c18*) unpack=(lz4 -dcq) ;; # Debian 12 kernels: lz4 legacy frames
	5d0000*) unpack=(xz -dc --format=lzma) ;;
	425a68*) unpack=(bzip2 -dc) ;;
	*) echo "vm: unknown kernel compression (magic $magic)" >&2; return 1 ;;
	esac
	command -v "${unpack[0]}" >/dev/null || { echo "vm: ${unpack[0]} missing" >&2; return 1; }
	dd if="$bz" bs=64K iflag=skip_bytes,count_bytes skip="$start" count=$((len - trail)) \
		status=none | "${unpack[@]}" >"$out.tmp" 2>/dev/null || return 1
	[ "$(od -An -c -N4 "$out.tmp" | tr -d ' \n')" = '177ELF' ] || return 1
	if [ $trail -eq 4 ]; then
		want=$(rd "$bz" 4 $((start + len - 4)))
		[ "$(stat -c %s "$out.tmp")" -eq "$want" ] || return 1
	fi
	# qemu boots an ELF only through its PVH note (Xen note type 0x12); without it, use the bzImage.
	if command -v readelf >/dev/null &&
		! readelf -n "$out.tmp" | grep -qiE 'note type: \(0x0*12\)|PHYS32_ENTRY'; then
		echo "vm: vmlinux has no PVH entry note" >&2
		return 1
	fi
	mv "$out.tmp" "$out"
}

# Sets $kernel: the newest bookworm kernel of $flavour, downloaded once into $cache.
ensure_kernel() {
	local pkg dir dl deb res
	if [ -n "${VM_KERNEL:-}" ]; then
		kernel=$VM_KERNEL
		return
	fi
	mkdir -p "$cache"
	exec 8>"$cache/.lock"
	flock 8 # concurrent runs share the download
	# apt-cache takes 1-2 s here (no pkgcache.bin): resolve again only when the apt lists changed.
	res=$cache/resolved-$flavour
	if [ -s "$res" ] && [ -z "$(find /var/lib/apt/lists -maxdepth 1 -newer "$res" -print -quit)" ]
	then
		pkg=$(cat "$res")
	else
		pkg=$(apt-cache depends "$flavour" 2>/dev/null |
			sed -n 's/^ *Depends: \(linux-image-[^ ]*\)$/\1/p' | head -1)
		[ -z "$pkg" ] || echo "$pkg" >"$res"
	fi
	if [ -z "$pkg" ]; then # no apt lists: take the newest cached kernel
		pkg=$(find "$cache" -maxdepth 1 -name 'linux-image-*' -printf '%f\n' | sort -V | tail -1)
		[ -n "$pkg" ] || die "apt-cache cannot resolve $flavour and nothing is cached"
	fi
	dir=$cache/$pkg
	if [ ! -f "$dir/vmlinuz" ]; then
		echo "vm: fetching $pkg into $cache"
		dl=$(mktemp -d "$cache/dl.XXXXXX")
		# apt warns when its sandbox user cannot write here; the download still works.
		(cd "$dl" && apt-get download -qq "$pkg" 2>&1 | grep -v 'unsandboxed as root' >&2) || true
		deb=$(find "$dl" -maxdepth 1 -name '*.deb' -print -quit)
		[ -n "$deb" ] || { rm -rf "$dl"; die "apt-get download $pkg failed"; }
		# Only boot/ is needed: the modules would be ~100 MB on disk and go unused.
		dpkg-deb --fsys-tarfile "$deb" | tar -xf - -C "$dl" --wildcards './boot/vmlinuz-*'
		mkdir -p "$dir"
		mv "$dl"/boot/vmlinuz-* "$dir/vmlinuz"
		rm -rf "$dl"
		# Older kernels are not needed any more.
		find "$cache" -mindepth 1 -maxdepth 1 -name 'linux-image-*' ! -name "$pkg" \
			-exec rm -rf {} +
	fi
	if [ ! -f "$dir/vmlinux" ] && [ ! -f "$dir/vmlinux.none" ]; then
		extract_vmlinux "$dir/vmlinuz" "$dir/vmlinux" || {
			rm -f "$dir/vmlinux.tmp"
			echo "vm: cannot extract vmlinux; booting the bzImage (slower)" >&2
			: >"$dir/vmlinux.none"
		}
	fi
	kernel=$dir/vmlinuz
	[ -f "$dir/vmlinux" ] && kernel=$dir/vmlinux
	exec 8>&-
}

# Copies ELF files $@ (host paths) into the root at $root under the same paths, with their
# shared-library closure and the dynamic loader.
root=$tmp/root
add_libs() {
	local f
	# One ldd for all (it is a script that runs the loader per file); static binaries make it
	# fail with "not a dynamic executable".
	{ ldd "$@" 2>/dev/null || true; } |
		sed -n 's/.*=> \(\/[^ ]*\) .*/\1/p; s/^[[:space:]]*\(\/[^ ]*\) (0x.*/\1/p' |
		sort -u | while read -r f; do
			[ -e "$root$f" ] || { mkdir -p "$root${f%/*}" && cp -L "$f" "$root$f"; }
		done
}

# Host programs the scripts and tests use beyond busybox: bash (#!/bin/bash scripts), coreutils
# timeout (tests/run.sh uses --kill-after), setpriv and systemd-socket-activate (test_track).
read -ra host_tools <<<"bash timeout setpriv systemd-socket-activate ${VM_HOST_TOOLS:-}"

# VM_WITH_PG=1: the PostgreSQL server for tests/pg/ in the guest (about 50 MB more initramfs,
# most of it ICU's data). Appends to build_initramfs's elves; the guest gets PGBIN.
pg_bin=
add_pg() {
	local pg f
	pg=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -type d 2>/dev/null | sort -V | tail -1)
	[ -n "$pg" ] && [ -x "$pg/bin/postgres" ] ||
		die "VM_WITH_PG=1: no PostgreSQL server on the host (apt-get install postgresql postgresql-contrib)"
	pg_bin=$pg/bin
	mkdir -p "$root$pg/bin" "$root$pg/lib" "$root/usr/share/postgresql" "$root/usr/share/zoneinfo/Etc"
	for f in postgres initdb pg_ctl pgbench psql pg_isready; do
		[ -x "$pg/bin/$f" ] || die "VM_WITH_PG=1: $pg/bin/$f missing"
		cp "$pg/bin/$f" "$root$pg/bin/"
		elves+=("$pg/bin/$f")
	done
	# Extensions (pg_prewarm, pg_buffercache, plpgsql, dict_snowball that initdb needs); not the
	# LLVM JIT (libLLVM is ~100 MB; jit = off in the guest's clusters).
	for f in "$pg"/lib/*.so; do
		case ${f##*/} in llvmjit*) continue ;; esac
		cp "$f" "$root$pg/lib/"
		elves+=("$f")
	done
	cp -r "/usr/share/postgresql/${pg##*/}" "$root/usr/share/postgresql/"
	# Debian builds PostgreSQL with the system's tzdata: UTC is enough (TZ=UTC in the guest).
	for f in UTC Etc/UTC GMT; do
		[ -e "/usr/share/zoneinfo/$f" ] && cp -L "/usr/share/zoneinfo/$f" "$root/usr/share/zoneinfo/$f"
	done
	[ -e "$BUILD/libtier-preload.so" ] || die "VM_WITH_PG=1: $BUILD/libtier-preload.so missing"
	mkdir -p "$root$guest_repo/$BUILD"
	cp "$BUILD/libtier-preload.so" "$root$guest_repo/$BUILD/"
	elves+=("$BUILD/libtier-preload.so")
}

build_initramfs() {
	local f t p d name
	local -a elves=()
	mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,usr/lib,usr/lib64,etc,proc,sys,dev,tmp,run,root}
	mkdir -p "$root$guest_repo" "$root/vmtest"
	# Merged /usr like the host, so the paths ldd prints and the loader's defaults all resolve.
	ln -s usr/lib "$root/lib"
	ln -s usr/lib64 "$root/lib64"

	for t in "${host_tools[@]}"; do
		p=$(command -v "$t" 2>/dev/null) || { echo "vm: no $t on the host; skipped" >&2; continue; }
		p=$(readlink -f "$p")
		name=$(basename "$t")
		cp "$p" "$root/usr/bin/$name"
		[ -e "$root/bin/$name" ] || ln -s "../usr/bin/$name" "$root/bin/$name"
		elves+=("$p")
	done
	p=$(command -v busybox) || die "busybox missing (apt-get install busybox-static)"
	cp "$(readlink -f "$p")" "$root/bin/busybox"
	elves+=("$p")
	# The other applet links are made by /init (busybox --install -s keeps existing files, so the
	# host tools win); 300 ln forks here would cost seconds.
	ln -s busybox "$root/bin/sh"

	# The project: binaries under $BUILD at the same relative paths, and the repo's scripts.
	while IFS= read -r -d '' f; do
		mkdir -p "$root$guest_repo/$(dirname "$f")"
		cp -P "$f" "$root$guest_repo/$f"
		[ -L "$f" ] || elves+=("$f")
	done < <(find "$BUILD" -maxdepth 1 \( -name tierd -o -name 'tierd-*' -o -name tierctl \
			-o -name 'libtier.so*' \) \( -type f -o -type l \) -print0
		[ -d "$BUILD/tests" ] && find "$BUILD/tests" -type f -perm -u+x -print0)
	for d in tests tools config; do
		[ -d "$d" ] && cp -r "$d" "$root$guest_repo/"
	done
	# A CMD that is a script elsewhere in the repo comes along too.
	if [ -f "$1" ] && [[ $(realpath "$1") == "$repo"/* ]]; then
		f=$(realpath --relative-to="$repo" "$1")
		mkdir -p "$root$guest_repo/$(dirname "$f")"
		cp "$1" "$root$guest_repo/$f"
	fi
	[ "${VM_WITH_PG:-0}" = 1 ] && add_pg
	add_libs "${elves[@]}"

	printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' \
		'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' >"$root/etc/passwd"
	printf '%s\n' 'root:x:0:' 'nogroup:x:65534:' >"$root/etc/group"
	if [ "${VM_WITH_PG:-0}" = 1 ]; then
		echo 'postgres:x:101:101:PostgreSQL:/var/lib/postgresql:/bin/sh' >>"$root/etc/passwd"
		echo 'postgres:x:101:' >>"$root/etc/group"
		mkdir -p "$root/var/lib/postgresql"
	fi
	cp tests/vm/init "$root/init"
	chmod 755 "$root/init"
	# CMD and the environment, quoted for the guest's shell.
	{
		printf 'set --'
		for a in "$@"; do printf ' %s' "$(q "$a")"; done
		echo
	} >"$root/vmtest/cmd"
	{
		for v in BUILD TEST_TIMEOUT GUEST_TESTS CHAOS_SEED CHAOS_VM_CYCLES ASAN_OPTIONS UBSAN_OPTIONS ${VM_ENV:-}; do
			[ -n "${!v+x}" ] && echo "export $v=$(q "${!v}")"
		done
		echo "export VM_NODES=$nodes"
		[ -z "$pg_bin" ] || echo "export PGBIN=$(q "$pg_bin") TZ=UTC"
	} >"$root/vmtest/env"

	(cd "$root" && find . -print0 | cpio --null -o -H newc -R 0:0 --quiet) | gzip -1 >"$tmp/initrd"
	[ -z "${VM_KEEP_INITRD:-}" ] || cp "$tmp/initrd" "$VM_KEEP_INITRD"
}

ensure_kernel
build_initramfs "$@"

# Topology: node 0 has every CPU and local memory; the others are memory-only and farther away
# (by default a slower tier at 20, a still slower one at 30).
total=0 boot=0
numa=() dimm=()
for ((n = 0; n < nodes; n++)); do
	total=$((total + mib[n]))
	numa+=(-object "memory-backend-ram,id=m$n,size=${mib[n]}M")
	if [ $n -eq 0 ]; then
		numa+=(-numa "node,nodeid=0,cpus=0-$((cpus - 1)),memdev=m0")
	elif [ $hotplug -eq 1 ] && [ $n -eq $((nodes - 1)) ]; then
		# No boot memory: the node exists (SRAT's hotplug range is the last node's) and
		# gets its memory from the DIMM.
		numa+=(-numa "node,nodeid=$n")
		dimm=(-device "pc-dimm,id=dimm$n,memdev=m$n,node=$n")
		continue
	else
		numa+=(-numa "node,nodeid=$n,memdev=m$n")
	fi
	boot=$((boot + mib[n]))
done
memory=(-m "${total}M")
hp_note=
if [ $hotplug -eq 1 ]; then
	memory=(-m "${boot}M,slots=1,maxmem=${total}M")
	hp_note=", node $((nodes - 1)) hot-plugged"
fi
numa+=(-numa "dist,src=0,dst=1,val=${dists[0]}")
[ "$nodes" -eq 3 ] && numa+=(-numa "dist,src=0,dst=2,val=${dists[1]}" -numa "dist,src=1,dst=2,val=${dists[2]}")
bios=()
# qboot instead of SeaBIOS: about a second less, and it still passes the SRAT/SLIT tables.
[ -f /usr/share/qemu/qboot.rom ] && bios=(-bios /usr/share/qemu/qboot.rom)
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 missing"

# This host's KVM only runs specially built guest kernels: emulate (TCG). tsc=reliable must not
# be added: under TCG it made the guest clock run ~10x fast. Debian's kernel turns automatic NUMA
# balancing on when it sees several nodes; it would move pages behind the tests' backs (toward
# node 0), so it starts off: a test that wants it writes /proc/sys/kernel/numa_balancing, or
# VM_APPEND=numa_balancing=enable turns it on for the whole run.
append="console=ttyS0 quiet panic=-1 rdinit=/init mitigations=off numa_balancing=disable"
# The DIMM's blocks are onlined as the kernel adds them (the default leaves them offline), into
# ZONE_MOVABLE: nothing unmovable lands there, so they can all be offlined again.
[ $hotplug -eq 1 ] && append+=" memhp_default_state=online_movable"
mkfifo "$tmp/console"
t0=${EPOCHREALTIME//[!0-9]/}
timeout -k 5 "$timeout" qemu-system-x86_64 -machine pc -accel tcg,thread=multi -cpu max \
	-smp "$cpus" "${memory[@]}" "${numa[@]}" "${dimm[@]}" "${bios[@]}" \
	-kernel "$kernel" -initrd "$tmp/initrd" \
	-append "$append ${VM_APPEND:-}" \
	-nographic -no-reboot -nic none </dev/null >"$tmp/console" 2>&1 &
qpid=$!

# Stream the console: CMD's lines without the prefix, kernel lines (oopses, warnings) marked as
# such once CMD runs; before that, keep the last lines to show if the guest never gets there.
started=0 status='' tail_lines=()
read_timeout=() # none until CMD has exited: timeout(1) ends qemu, and then the console
while true; do
	line='' rc=0
	IFS= read -r "${read_timeout[@]}" line || rc=$?
	if [ $rc -gt 128 ]; then # the guest said it was done but did not power off
		kill "$qpid" 2>/dev/null || true
		break
	fi
	[ $rc -eq 0 ] || [ -n "$line" ] || break # end of the console: qemu exited
	line=${line%$'\r'}
	case $line in
	"$prefix"*) printf '%s\n' "${line#"$prefix"}" ;;
	VMTEST-START)
		started=1
		t=$((${EPOCHREALTIME//[!0-9]/} - t0))
		printf 'vm: booted in %d.%01ds (%d nodes, %d CPUs, %s MiB, distances %s%s, %s)\n' \
			$((t / 1000000)) $((t / 100000 % 10)) "$nodes" "$cpus" "${mib[*]:0:nodes}" \
			"${dists[*]}" "$hp_note" "$(basename "$kernel")"
		;;
	"VMTEST-EXIT "*)
		status=${line#VMTEST-EXIT }
		read_timeout=(-t 15)
		;;
	*)
		if [ $started -eq 1 ]; then
			# (after VMTEST-EXIT only "reboot: Power down" is expected)
			[ -n "$line" ] && [ -z "$status" ] && printf 'vm-console| %s\n' "$line"
		else
			tail_lines+=("$line")
			[ ${#tail_lines[@]} -gt 40 ] && tail_lines=("${tail_lines[@]:1}")
		fi
		;;
	esac
done <"$tmp/console"
qrc=0
wait "$qpid" || qrc=$?
qpid=

if [[ $status =~ ^[0-9]+$ ]]; then
	exit "$status"
fi
if [ $qrc -eq 124 ] || [ $qrc -eq 137 ]; then
	echo "vm: timed out after ${timeout}s; qemu killed" >&2
	[ $started -eq 1 ] || printf 'vm| %s\n' "${tail_lines[@]}" >&2
	exit 124
fi
if [ $started -eq 1 ]; then
	echo "vm: the guest died before CMD finished (qemu status $qrc)" >&2
else
	echo "vm: the guest did not boot (qemu status $qrc); last console lines:" >&2
	printf 'vm| %s\n' "${tail_lines[@]}" >&2
fi
exit 125
