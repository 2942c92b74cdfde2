#!/usr/bin/env bash
# check.sh: read-only check of a Linux host for running ringmq.
#
# Prints one line per item:  PASS|WARN|FAIL <item>: <what was found> (<how to fix>)
# Never changes anything; runs without root. The only thing it writes is a 64 KiB
# temporary file in the data dir (the O_DIRECT test), removed before it exits.
# Exit status: 1 if any FAIL, else 0. See tuning/README.md for the reasoning per item.
set -u

DATA_DIR=./data

usage() {
    cat <<'EOF'
Usage: check.sh [--data-dir DIR] [--help]

Checks a Linux host for running the ringmq broker. Read-only, no root needed.

  --data-dir DIR   the broker's data directory (default: ./data). If it does not exist
                   yet, its nearest existing parent directory is checked instead.
  -h, --help       this text

Output: one line per item, "PASS|WARN|FAIL <item>: <found> (<how to fix>)".
Exit status: 1 if any item FAILs, else 0. Details: tuning/README.md.
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
        --data-dir)
            if [ $# -lt 2 ]; then echo "check.sh: --data-dir needs a directory" >&2; exit 2; fi
            DATA_DIR=$2; shift 2 ;;
        --data-dir=*) DATA_DIR=${1#--data-dir=}; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "check.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done

NFAIL=0
TMPFILE=""
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() { if [ -n "$TMPFILE" ]; then rm -f -- "$TMPFILE"; fi; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# report LEVEL ITEM FOUND [FIX]
report() {
    local level=$1 item=$2 found=$3 fix=${4:-}
    if [ -n "$fix" ]; then
        printf '%s %s: %s (%s)\n' "$level" "$item" "$found" "$fix"
    else
        printf '%s %s: %s\n' "$level" "$item" "$found"
    fi
    if [ "$level" = FAIL ]; then NFAIL=$((NFAIL + 1)); fi
}

# readf FILE: print the file's content (first line, trimmed); status 1 if unreadable.
readf() {
    local v
    [ -r "$1" ] || return 1
    { IFS= read -r v < "$1"; } 2>/dev/null || [ -n "${v:-}" ] || return 1
    printf '%s' "$v"
}

# bracketed "a [b] c" -> "b" (sysfs multiple-choice files)
bracketed() { local s=${1#*[}; printf '%s' "${s%%]*}"; }

# shellcheck source=tuning/lib.sh
. "$(dirname "$0")/lib.sh"

# sysctl_min ITEM KEY MIN FIX: PASS if /proc/sys value >= MIN
sysctl_min() {
    local item=$1 key=$2 min=$3 fix=$4 v
    if ! v=$(readf "/proc/sys/${key//.//}"); then
        report WARN "$item" "could not read $key" "$fix"
    elif ! is_uint "$v"; then
        report WARN "$item" "$key=$v is not a number" "$fix"
    elif [ "$v" -ge "$min" ]; then
        report PASS "$item" "$key=$v"
    else
        report WARN "$item" "$key=$v, below $min" "$fix"
    fi
}

# sysctl_triple_max ITEM KEY MIN FIX: third field ("max") of e.g. tcp_rmem >= MIN
sysctl_triple_max() {
    local item=$1 key=$2 min=$3 fix=$4 v lo def max
    if ! v=$(readf "/proc/sys/${key//.//}"); then
        report WARN "$item" "could not read $key" "$fix"
        return
    fi
    read -r lo def max <<<"$v"
    if is_uint "${max:-}" && [ "$max" -ge "$min" ]; then
        report PASS "$item" "$key=\"$lo $def $max\""
    else
        report WARN "$item" "$key=\"${lo:-?} ${def:-?} ${max:-?}\", max below $min" "$fix"
    fi
}

NCPU=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
is_uint "$NCPU" || NCPU=1

# ---------------------------------------------------------------- kernel / io_uring
check_kernel() {
    local rel major minor
    rel=$(uname -r 2>/dev/null || echo unknown)
    major=${rel%%.*}; minor=${rel#*.}; minor=${minor%%[!0-9]*}
    if ! is_uint "$major" || ! is_uint "$minor"; then
        report WARN kernel "could not parse kernel release '$rel'" "glommio needs Linux >= 5.8"
    elif [ "$major" -gt 5 ] || { [ "$major" -eq 5 ] && [ "$minor" -ge 8 ]; }; then
        report PASS kernel "Linux $rel (glommio needs >= 5.8)"
    else
        report FAIL kernel "Linux $rel is older than 5.8" "upgrade the kernel; glommio needs io_uring features from 5.8"
    fi
}

check_io_uring_disabled() {
    local f=/proc/sys/kernel/io_uring_disabled v grp
    if [ ! -e "$f" ]; then
        report PASS io_uring_disabled "knob absent (kernel before 6.6): io_uring not disabled by sysctl"
        return
    fi
    if ! v=$(readf "$f"); then
        report WARN io_uring_disabled "could not read $f" "cat $f; must be 0"
        return
    fi
    case "$v" in
        0) report PASS io_uring_disabled "kernel.io_uring_disabled=0" ;;
        1) grp=$(readf /proc/sys/kernel/io_uring_group || echo -1)
           if [ "$grp" != -1 ] && id -G 2>/dev/null | tr ' ' '\n' | grep -qx -- "$grp"; then
               report WARN io_uring_disabled "kernel.io_uring_disabled=1; this user is in io_uring_group $grp" \
                   "the broker's user must be in group $grp too, or: sysctl -w kernel.io_uring_disabled=0"
           else
               report FAIL io_uring_disabled "kernel.io_uring_disabled=1 (only root / group ${grp} may use io_uring)" \
                   "sysctl -w kernel.io_uring_disabled=0, or add the broker's user to kernel.io_uring_group"
           fi ;;
        2) report FAIL io_uring_disabled "kernel.io_uring_disabled=2: io_uring off for everyone" \
               "sysctl -w kernel.io_uring_disabled=0 and persist it in /etc/sysctl.d/" ;;
        *) report WARN io_uring_disabled "unexpected value '$v'" "must be 0" ;;
    esac
}

check_seccomp() {
    local v
    if ! v=$(grep -s '^Seccomp:' /proc/self/status | awk '{print $2}') || [ -z "$v" ]; then
        report WARN seccomp "could not read Seccomp from /proc/self/status" "make sure no seccomp profile blocks io_uring_setup"
    elif [ "$v" = 0 ]; then
        report PASS seccomp "no seccomp filter on this process"
    else
        report WARN seccomp "seccomp mode $v active (container or sandbox?)" \
            "the profile must allow io_uring_setup/io_uring_enter/io_uring_register; Docker's default blocks them"
    fi
}

# A real io_uring_setup(2) call (syscall 425 on x86_64 and aarch64) via python3, if present.
check_io_uring_probe() {
    local out arch
    arch=$(uname -m 2>/dev/null || echo unknown)
    case "$arch" in x86_64|aarch64) ;; *)
        report WARN io_uring_probe "skipped on $arch" "trust io_uring_disabled/seccomp above"; return ;;
    esac
    if ! command -v python3 >/dev/null 2>&1; then
        report WARN io_uring_probe "python3 not found, probe skipped" "trust io_uring_disabled/seccomp above"
        return
    fi
    out=$(python3 - 2>/dev/null <<'EOF'
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
params = ctypes.create_string_buffer(120)
fd = libc.syscall(425, 4, params)
if fd >= 0:
    os.close(fd); print("ok")
else:
    print(os.strerror(ctypes.get_errno()))
EOF
) || out="python3 failed"
    if [ "$out" = ok ]; then
        report PASS io_uring_probe "io_uring_setup works for this user"
    else
        report FAIL io_uring_probe "io_uring_setup failed: ${out:-unknown error}" \
            "see io_uring_disabled/seccomp; in Docker run with a seccomp profile allowing io_uring_*"
    fi
}

# ---------------------------------------------------------------- limits
# CAP_IPC_LOCK (bit 14) in the effective set: io_uring does not charge registered buffers.
has_ipc_lock() {
    local cap
    cap=$(awk '/^CapEff:/ {print $2}' /proc/self/status 2>/dev/null) || return 1
    [ -n "$cap" ] || return 1
    [ $(( (16#$cap >> 14) & 1 )) = 1 ]
}

check_memlock() {
    local soft need_kib=$((NCPU * 32 * 1024)) fix note=""
    fix="ulimit -l unlimited / LimitMEMLOCK=infinity / limits.d memlock unlimited; see README"
    soft=$(ulimit -l 2>/dev/null) || { report WARN memlock "could not read ulimit -l" "$fix"; return; }
    if [ "$soft" = unlimited ]; then
        report PASS memlock "ulimit -l unlimited"
    elif ! is_uint "$soft"; then
        report WARN memlock "could not parse ulimit -l '$soft'" "$fix"
    elif [ "$soft" -lt 512 ]; then
        report FAIL memlock "ulimit -l ${soft} KiB < 512 KiB: glommio refuses to start an executor" "$fix"
    elif [ "$soft" -lt "$need_kib" ]; then
        if has_ipc_lock; then
            note="; this shell has CAP_IPC_LOCK (root), which io_uring does not charge, but the broker's own user has not"
        fi
        report WARN memlock "ulimit -l $((soft / 1024)) MiB < ${NCPU} executors x ~32 MiB: io buffers will not be registered (broker runs, a bit slower)${note}" "$fix"
    else
        report PASS memlock "ulimit -l $((soft / 1024)) MiB (>= ${NCPU} executors x ~32 MiB)"
    fi
}

check_nofile() {
    local soft hard fix="ulimit -n 1048576 / LimitNOFILE=1048576 / limits.d nofile 1048576"
    soft=$(ulimit -Sn 2>/dev/null) || soft=""
    hard=$(ulimit -Hn 2>/dev/null) || hard="?"
    if [ "$soft" = unlimited ]; then
        report PASS nofile "ulimit -n unlimited"
    elif ! is_uint "$soft"; then
        report WARN nofile "could not read ulimit -n" "$fix"
    elif [ "$soft" -ge 1048576 ]; then
        report PASS nofile "ulimit -n $soft"
    else
        report WARN nofile "ulimit -n $soft (hard $hard): 3 fds per segment, ~$((soft / 3)) segments at most, minus sockets" "$fix"
    fi
}

# ---------------------------------------------------------------- data dir

DIR=$(resolve_dir "$DATA_DIR")
check_data_dir() {
    if [ "$DIR" = "$DATA_DIR" ]; then
        report PASS data_dir "$DATA_DIR exists"
    else
        report WARN data_dir "$DATA_DIR does not exist; checking its parent $DIR" "mkdir -p $DATA_DIR; the broker also creates it"
    fi
}

FSTYPE=""
check_fs() {
    local opts src fix="put the data dir on XFS or ext4 on a local NVMe device"
    FSTYPE=$(findmnt -n -o FSTYPE -T "$DIR" 2>/dev/null | head -n1) || FSTYPE=""
    [ -n "$FSTYPE" ] || FSTYPE=$(stat -f -c %T -- "$DIR" 2>/dev/null) || FSTYPE=""
    src=$(findmnt -n -o SOURCE -T "$DIR" 2>/dev/null | head -n1) || src=""
    case "$FSTYPE" in
        "") report WARN filesystem "could not read the filesystem type of $DIR" "$fix" ;;
        xfs|ext4) report PASS filesystem "$FSTYPE on ${src:-?}" ;;
        tmpfs|ramfs) report FAIL filesystem "$FSTYPE: memory, not durable; glommio falls back to buffered I/O" "$fix" ;;
        overlay|overlayfs|nfs|nfs4|cifs|smb3|9p|fuse*|virtiofs|ceph|glusterfs)
            report WARN filesystem "$FSTYPE: O_DIRECT may fail or lie about durability" "$fix; in containers bind-mount a host XFS/ext4 dir" ;;
        btrfs|zfs|bcachefs|f2fs|ext2|ext3)
            report WARN filesystem "$FSTYPE works if O_DIRECT works, but is not what ringmq is tested on" "$fix" ;;
        *) report WARN filesystem "$FSTYPE is unusual for a broker" "$fix" ;;
    esac

    opts=$(findmnt -n -o OPTIONS -T "$DIR" 2>/dev/null | head -n1) || opts=""
    case ",$opts," in
        ,,) report WARN mount_options "could not read mount options of $DIR" "mount with noatime" ;;
        *,noatime,*) report PASS mount_options "noatime" ;;
        *,relatime,*) report WARN mount_options "relatime (harmless; noatime avoids the daily atime write)" "add noatime in /etc/fstab, then mount -o remount,noatime <mountpoint>" ;;
        *) report WARN mount_options "atime updates on (${opts})" "add noatime in /etc/fstab, then mount -o remount,noatime <mountpoint>" ;;
    esac
}

check_odirect() {
    local err
    if [ ! -w "$DIR" ]; then
        report WARN o_direct "$DIR is not writable by $(id -un 2>/dev/null || echo this user), test skipped" "run as the broker's user, or chown the data dir"
        return
    fi
    if ! TMPFILE=$(mktemp -- "$DIR/.ringmq-check.XXXXXX" 2>/dev/null); then
        TMPFILE=""
        report WARN o_direct "could not create a temp file in $DIR" "check permissions and free space"
        return
    fi
    if err=$(dd if=/dev/zero of="$TMPFILE" bs=4096 count=16 oflag=direct conv=fsync,notrunc status=none 2>&1); then
        report PASS o_direct "dd oflag=direct into $DIR works"
    else
        err=$(printf '%s' "$err" | tr '\n' ' ')
        report FAIL o_direct "dd oflag=direct into $DIR failed: ${err% }" "use XFS or ext4 on a block device; tmpfs/overlay/network filesystems may refuse O_DIRECT"
    fi
    rm -f -- "$TMPFILE"; TMPFILE=""
}

check_space() {
    local line avail pct
    line=$(df -Pk -- "$DIR" 2>/dev/null | awk 'NR==2 {print $4, $5}') || line=""
    read -r avail pct <<<"$line"
    pct=${pct%\%}
    if ! is_uint "${avail:-}" || ! is_uint "${pct:-}"; then
        report WARN disk_space "could not read free space of $DIR" "df -h $DIR"
    elif [ "$avail" -lt $((1024 * 1024)) ]; then
        report FAIL disk_space "$((avail / 1024)) MiB free on $DIR" "free space or lower retention; the broker pre-allocates segments"
    elif [ "$pct" -ge 90 ]; then
        report WARN disk_space "$((avail / 1024 / 1024)) GiB free, ${pct}% used" "keep at least 10% free; lower retention or add disk"
    else
        report PASS disk_space "$((avail / 1024 / 1024)) GiB free, ${pct}% used"
    fi
}

# ---------------------------------------------------------------- block device

check_block() {
    local majmin disks d name q v sched rot
    majmin=$(findmnt -n -o MAJ:MIN -T "$DIR" 2>/dev/null | head -n1 | tr -d ' ') || majmin=""
    case "$majmin" in *:*) ;; *) majmin=$(stat -c '%Hd:%Ld' -- "$DIR" 2>/dev/null) || majmin="" ;; esac
    if [ -z "$majmin" ] || [ ! -e "/sys/dev/block/$majmin" ]; then
        report WARN block_device "no block device for $DIR (dev ${majmin:-?}; $FSTYPE)" "scheduler/nomerges checks skipped; run check.sh on the host with the real data dir"
        return
    fi
    disks=$(leaf_disks "/sys/dev/block/$majmin")
    if [ -z "$disks" ]; then
        report WARN block_device "could not resolve /sys/dev/block/$majmin to a disk" "check lsblk by hand"
        return
    fi
    while IFS= read -r d; do
        name=${d##*/}; q=$d/queue
        if [ -d "/sys/block/$name/queue" ]; then q=/sys/block/$name/queue; fi
        if [ ! -d "$q" ]; then
            report WARN "block_device $name" "no queue dir in $d" "check lsblk by hand"; continue
        fi
        rot=$(readf "$q/rotational" || echo "?")
        case "$name:$rot" in
            nvme*) report PASS "block_device $name" "NVMe (dev $majmin)" ;;
            vd*:*|xvd*:*) report WARN "block_device $name" "virtual disk (rotational=$rot as reported by the hypervisor): fine for development, not production" "use a local NVMe device in production" ;;
            *:1) report WARN "block_device $name" "rotational disk" "ringmq is designed for NVMe; expect much lower fsync rates" ;;
            *) report PASS "block_device $name" "non-rotational (dev $majmin)" ;;
        esac
        if sched=$(readf "$q/scheduler"); then
            v=$(bracketed "$sched")
            case "$sched" in
                *\[none\]*|none) report PASS "scheduler $name" "none" ;;
                *none*) report WARN "scheduler $name" "$v" "echo none > $q/scheduler; persist with the udev rule in README" ;;
                *) report WARN "scheduler $name" "$v ('none' not offered: $sched)" "use a multi-queue (blk-mq) device/driver" ;;
            esac
        else
            report WARN "scheduler $name" "could not read $q/scheduler" "cat $q/scheduler"
        fi
        if v=$(readf "$q/nomerges"); then
            if [ "$v" = 2 ]; then report PASS "nomerges $name" "2"
            else report WARN "nomerges $name" "$v" "echo 2 > $q/nomerges"; fi
        else
            report WARN "nomerges $name" "could not read $q/nomerges" "echo 2 > $q/nomerges"
        fi
        if v=$(readf "$q/rq_affinity"); then
            if [ "$v" = 2 ]; then report PASS "rq_affinity $name" "2"
            else report WARN "rq_affinity $name" "$v" "echo 2 > $q/rq_affinity"; fi
        else
            report WARN "rq_affinity $name" "could not read $q/rq_affinity" "echo 2 > $q/rq_affinity"
        fi
        if v=$(readf "$q/io_poll"); then
            if [ "$v" = 1 ]; then report PASS "io_poll $name" "1: poll queues present, glommio's poll ring is used"
            else report PASS "io_poll $name" "0: no poll queues, glommio uses interrupt completions" "optional: nvme.poll_queues=N on the kernel command line, see README"; fi
        else
            report WARN "io_poll $name" "could not read $q/io_poll" "optional, see README"
        fi
    done <<<"$disks"
}

# ---------------------------------------------------------------- CPU, memory, clocks
check_governor() {
    local f g govs="" bad=0 n=0
    for f in /sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor; do
        [ -e "$f" ] || continue
        n=$((n + 1))
        g=$(readf "$f") || g="?"
        case " $govs " in *" $g "*) ;; *) govs="${govs:+$govs }$g" ;; esac
        [ "$g" = performance ] || bad=$((bad + 1))
    done
    if [ "$n" = 0 ]; then
        report WARN cpu_governor "cpufreq not exposed (typical in VMs; the hypervisor decides)" "on bare metal: cpupower frequency-set -g performance"
    elif [ "$bad" = 0 ]; then
        report PASS cpu_governor "performance on $n CPUs"
    else
        report WARN cpu_governor "$bad of $n CPUs not on performance (seen: $govs)" "cpupower frequency-set -g performance (or tuning/apply.sh)"
    fi
}

check_thp() {
    local f=/sys/kernel/mm/transparent_hugepage/enabled s v
    if ! s=$(readf "$f"); then
        report WARN transparent_hugepages "could not read $f" "echo madvise > $f"
        return
    fi
    v=$(bracketed "$s")
    case "$v" in
        madvise) report PASS transparent_hugepages "madvise" ;;
        *) report WARN transparent_hugepages "$v" "echo madvise > $f; persist with transparent_hugepage=madvise on the kernel command line" ;;
    esac
}

check_swappiness() {
    local v swap
    swap=$(awk '/^SwapTotal:/ {print $2}' /proc/meminfo 2>/dev/null) || swap=""
    if ! v=$(readf /proc/sys/vm/swappiness); then
        report WARN swappiness "could not read vm.swappiness" "sysctl -w vm.swappiness=1"
    elif is_uint "$v" && [ "$v" -le 1 ]; then
        report PASS swappiness "vm.swappiness=$v"
    elif [ "${swap:-}" = 0 ]; then
        report WARN swappiness "vm.swappiness=$v (no swap configured right now)" "sysctl -w vm.swappiness=1"
    else
        report WARN swappiness "vm.swappiness=$v" "sysctl -w vm.swappiness=1"
    fi
}

check_clocksource() {
    local f=/sys/devices/system/clocksource/clocksource0/current_clocksource v
    if ! v=$(readf "$f"); then
        report WARN clocksource "could not read $f" "cat $f"
    elif [ "$v" = tsc ]; then
        report PASS clocksource "tsc"
    else
        report WARN clocksource "$v (timestamps and timers cost more than with tsc)" "echo tsc > $f if tsc is listed in available_clocksource; in VMs kvm-clock is acceptable"
    fi
}

# DAMON (mm/damon): a kdamond kernel thread samples page accesses and, with a scheme such as
# pageout, reclaims "cold" memory, the broker's idle buffers included. Each pass runs for
# milliseconds on some CPU (README section 14).
check_damon() {
    local admin=/sys/kernel/mm/damon/admin/kdamonds d state pid ops actions a on=0 found="" m
    for d in "$admin"/[0-9]*; do
        [ -d "$d" ] || continue
        state=$(readf "$d/state") || continue
        [ "$state" = on ] || continue
        on=$((on + 1))
        pid=$(readf "$d/pid") || pid="?"
        ops=$(readf "$d/contexts/0/operations") || ops="?"
        actions=""
        for a in "$d"/contexts/0/schemes/[0-9]*/action; do
            [ -e "$a" ] && actions="${actions:+$actions,}$(readf "$a")"
        done
        found="${found:+$found; }kdamond ${d##*/} (pid $pid, $ops${actions:+, $actions})"
    done
    for m in damon_reclaim damon_lru_sort damon_stat; do
        if [ "$(readf "/sys/module/$m/parameters/enabled")" = Y ]; then
            on=$((on + 1)); found="${found:+$found; }module $m enabled"
        fi
    done
    if [ "$on" -gt 0 ]; then
        report WARN damon "$found: runs ms-long passes on the CPUs and reclaims idle memory" \
            "echo off > $admin/N/state (tuning/apply.sh), or echo N > /sys/module/damon_*/parameters/enabled; see README 14"
    elif [ -d /sys/kernel/mm/damon ] || [ -d /sys/module/damon_reclaim ]; then
        report PASS damon "DAMON present, no monitoring context running"
    else
        report PASS damon "DAMON not in this kernel"
    fi
}

# How long a task that wakes on a busy broker core can keep it: a CPU-bound task in user space
# runs until it blocks or a scheduler tick ends its slice, so up to one tick period (4 ms at
# 250 Hz); with no preemption of kernel code, a kernel thread's pass runs to its end
# (README 14; PERF.md, "What else runs on the CPUs").
check_tick() {
    local config="" hz mode="" v
    if [ -r /proc/config.gz ] && command -v zcat >/dev/null 2>&1; then
        config=$(zcat /proc/config.gz 2>/dev/null || true)
    elif [ -r "/boot/config-$(uname -r)" ]; then
        config=$(cat "/boot/config-$(uname -r)")
    fi
    hz=$(printf '%s\n' "$config" | sed -n 's/^CONFIG_HZ=\([0-9][0-9]*\)$/\1/p')
    if v=$(readf /sys/kernel/debug/sched/preempt 2>/dev/null); then
        mode=$(printf '%s' "$v" | sed -n 's/.*(\([a-z]*\)).*/\1/p')
    fi
    if [ -z "$mode" ]; then
        mode=$(tr ' ' '\n' < /proc/cmdline 2>/dev/null | sed -n 's/^preempt=//p')
    fi
    if [ -z "$mode" ]; then
        case "$config" in
            *CONFIG_PREEMPT_NONE=y*) mode=none ;;
            *CONFIG_PREEMPT_VOLUNTARY=y*) mode=voluntary ;;
            *CONFIG_PREEMPT_LAZY=y*) mode=lazy ;;
            *CONFIG_PREEMPT=y*) mode=full ;;
        esac
    fi
    if [ -z "$hz" ]; then
        report PASS tick "kernel config not readable (no /proc/config.gz or /boot/config-$(uname -r)); preemption ${mode:-unknown}"
    elif [ "$hz" -lt 1000 ]; then
        report WARN tick "HZ=$hz, preemption ${mode:-unknown}: a task waking on a busy broker core can keep it up to $((1000 / hz)) ms" \
            "keep other work off the broker's cores (README 14); a HZ=1000 kernel bounds such runs near 1 ms"
    else
        report PASS tick "HZ=$hz, preemption ${mode:-unknown}"
    fi
}

check_numa() {
    local n=0 d
    for d in /sys/devices/system/node/node[0-9]*; do [ -d "$d" ] && n=$((n + 1)); done
    if [ "$n" = 0 ]; then
        report PASS numa "no NUMA topology exposed (one node)"
    elif [ "$n" = 1 ]; then
        report PASS numa "1 NUMA node, $NCPU CPUs"
    else
        report WARN numa "$n NUMA nodes, $NCPU CPUs" "one broker per node (numactl --cpunodebind=N --membind=N) or --cores within one node; see numactl --hardware"
    fi
}

check_irqbalance() {
    if pgrep -x irqbalance >/dev/null 2>&1; then
        report PASS irqbalance "running (spreads NIC/NVMe IRQs)" "for strict isolation set IRQBALANCE_BANNED_CPULIST to the broker's cores"
    elif ! command -v pgrep >/dev/null 2>&1; then
        report WARN irqbalance "pgrep not found, could not check" "systemctl status irqbalance"
    else
        report WARN irqbalance "not running: IRQs stay where the kernel put them" "systemctl enable --now irqbalance, or pin IRQs by hand as in README"
    fi
}

# ---------------------------------------------------------------- network
check_net() {
    sysctl_min somaxconn net.core.somaxconn 4096 "sysctl -w net.core.somaxconn=4096"
    sysctl_min tcp_max_syn_backlog net.ipv4.tcp_max_syn_backlog 4096 "sysctl -w net.ipv4.tcp_max_syn_backlog=4096"
    sysctl_min rmem_max net.core.rmem_max 16777216 "sysctl -w net.core.rmem_max=16777216"
    sysctl_min wmem_max net.core.wmem_max 16777216 "sysctl -w net.core.wmem_max=16777216"
    sysctl_triple_max tcp_rmem net.ipv4.tcp_rmem 16777216 "sysctl -w net.ipv4.tcp_rmem='4096 131072 16777216'"
    sysctl_triple_max tcp_wmem net.ipv4.tcp_wmem 16777216 "sysctl -w net.ipv4.tcp_wmem='4096 16384 16777216'"
    local v
    if v=$(readf /proc/sys/net/core/busy_poll); then
        report PASS busy_poll "net.core.busy_poll=$v (optional; see README)"
    else
        report WARN busy_poll "could not read net.core.busy_poll" "optional; see README"
    fi
}

check_kernel
check_io_uring_disabled
check_seccomp
check_io_uring_probe
check_memlock
check_nofile
check_data_dir
check_fs
check_odirect
check_space
check_block
check_governor
check_thp
check_swappiness
check_damon
check_tick
check_clocksource
check_numa
check_irqbalance
check_net

if [ "$NFAIL" -gt 0 ]; then exit 1; fi
exit 0
