#!/usr/bin/env bash
# apply.sh: apply the host tuning from tuning/README.md for running ringmq.
#
# Needs root (except --dry-run, which prints the exact commands and changes nothing).
# Never reboots, never touches network configuration beyond sysctls.
# Sysfs settings (scheduler, nomerges, rq_affinity, governor, THP, DAMON) last until reboot;
# README.md gives their persistent forms. The sysctl and limits files are persistent.
set -u

DATA_DIR=./data
DRY_RUN=0
USER_NAME=ringmq
SYSCTL_FILE=/etc/sysctl.d/90-ringmq.conf
LIMITS_FILE=/etc/security/limits.d/90-ringmq.conf

usage() {
    cat <<'EOF'
Usage: apply.sh [--dry-run] [--data-dir DIR] [--user NAME] [--help]

Applies the ringmq host tuning (see tuning/README.md). Needs root unless --dry-run.

  --dry-run        print the exact commands instead of running them
  --data-dir DIR   the broker's data directory (default: ./data); its block device(s)
                   get scheduler=none, nomerges=2, rq_affinity=2
  --user NAME      user the limits.d file applies to (default: ringmq)
  -h, --help       this text

Steps: block device queue settings, CPU governor performance, transparent huge pages
madvise, DAMON monitoring contexts off, /etc/sysctl.d/90-ringmq.conf (swappiness, somaxconn, syn backlog, TCP buffers;
loaded at once), /etc/security/limits.d/90-ringmq.conf (memlock unlimited, nofile 1048576).
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY_RUN=1; shift ;;
        --data-dir)
            if [ $# -lt 2 ]; then echo "apply.sh: --data-dir needs a directory" >&2; exit 2; fi
            DATA_DIR=$2; shift 2 ;;
        --data-dir=*) DATA_DIR=${1#--data-dir=}; shift ;;
        --user)
            if [ $# -lt 2 ]; then echo "apply.sh: --user needs a name" >&2; exit 2; fi
            USER_NAME=$2; shift 2 ;;
        --user=*) USER_NAME=${1#--user=}; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "apply.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done

if [ "$DRY_RUN" = 0 ] && [ "$(id -u)" != 0 ]; then
    echo "apply.sh changes kernel settings and files under /etc, so it needs root." >&2
    echo "Run it with sudo, or run 'apply.sh --dry-run' to see the commands it would run." >&2
    exit 1
fi

NERR=0
step() { printf '\n== %s\n' "$*"; }
say() { printf '   %s\n' "$*"; }
skip() { printf '   skipped: %s\n' "$*"; }

# put VALUE FILE: write a value into a sysfs/procfs file
put() {
    local value=$1 file=$2
    if [ "$DRY_RUN" = 1 ]; then
        printf '   echo %q > %q\n' "$value" "$file"
    elif printf '%s\n' "$value" > "$file" 2>/dev/null; then
        say "set $file = $value"
    else
        say "ERROR: could not write '$value' to $file"
        NERR=$((NERR + 1))
    fi
}

# run CMD...: run a command (or print it in dry-run)
run() {
    if [ "$DRY_RUN" = 1 ]; then
        printf '   '; printf '%q ' "$@"; printf '\n'
    elif "$@"; then
        say "ran: $*"
    else
        say "ERROR: failed: $*"
        NERR=$((NERR + 1))
    fi
}

# write_config FILE CONTENT: write a config file (or print it in dry-run)
write_config() {
    local file=$1 content=$2 dir=${1%/*}
    if [ "$DRY_RUN" = 1 ]; then
        [ -d "$dir" ] || printf '   mkdir -p %q\n' "$dir"
        printf "   cat > %q <<'EOF'\n%s\nEOF\n" "$file" "$content"
        return
    fi
    if ! mkdir -p -- "$dir" || ! printf '%s\n' "$content" > "$file"; then
        say "ERROR: could not write $file"
        NERR=$((NERR + 1))
        return
    fi
    say "wrote $file"
}

readf() {
    local v
    [ -r "$1" ] || return 1
    { IFS= read -r v < "$1"; } 2>/dev/null || [ -n "${v:-}" ] || return 1
    printf '%s' "$v"
}
# shellcheck source=tuning/lib.sh
. "$(dirname "$0")/lib.sh"

# ---------------------------------------------------------------- block devices


apply_block() {
    local dir majmin disks d name q sched
    step "block device queue of the data dir ($DATA_DIR): scheduler none, nomerges 2, rq_affinity 2"
    dir=$(resolve_dir "$DATA_DIR")
    [ "$dir" = "$DATA_DIR" ] || say "$DATA_DIR does not exist; using the device of $dir"
    majmin=$(findmnt -n -o MAJ:MIN -T "$dir" 2>/dev/null | head -n1 | tr -d ' ') || majmin=""
    case "$majmin" in *:*) ;; *) majmin=$(stat -c '%Hd:%Ld' -- "$dir" 2>/dev/null) || majmin="" ;; esac
    if [ -z "$majmin" ] || [ ! -e "/sys/dev/block/$majmin" ]; then
        skip "$dir is not on a block device (dev ${majmin:-?}); nothing to tune"
        return
    fi
    disks=$(leaf_disks "/sys/dev/block/$majmin")
    if [ -z "$disks" ]; then
        skip "could not resolve /sys/dev/block/$majmin to a disk"
        return
    fi
    while IFS= read -r d; do
        name=${d##*/}; q=$d/queue
        if [ -d "/sys/block/$name/queue" ]; then q=/sys/block/$name/queue; fi
        if [ ! -d "$q" ]; then skip "$name has no queue directory"; continue; fi
        say "device $name (from dev $majmin)"
        sched=$(readf "$q/scheduler") || sched=""
        case "$sched" in
            *\[none\]*|none) say "$name: scheduler already none" ;;
            *none*) put none "$q/scheduler" ;;
            *) skip "$name: scheduler 'none' not offered (${sched:-unreadable})" ;;
        esac
        if [ -e "$q/nomerges" ]; then put 2 "$q/nomerges"; else skip "$name: no nomerges file"; fi
        if [ -e "$q/rq_affinity" ]; then put 2 "$q/rq_affinity"; else skip "$name: no rq_affinity file"; fi
    done <<<"$disks"
    say "not persistent across reboot: install the udev rule from README.md"
}

# ---------------------------------------------------------------- CPU and memory
apply_governor() {
    local f n=0 avail
    step "CPU frequency governor: performance"
    for f in /sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor; do
        [ -e "$f" ] || continue
        avail=$(readf "${f%/*}/scaling_available_governors") || avail=""
        case " $avail " in
            *" performance "*) put performance "$f"; n=$((n + 1)) ;;
            *) skip "${f}: 'performance' not offered (${avail:-unreadable})" ;;
        esac
    done
    if [ "$n" = 0 ]; then skip "no cpufreq governors to set (no cpufreq, typical in VMs)"; fi
}

apply_thp() {
    local f=/sys/kernel/mm/transparent_hugepage/enabled
    step "transparent huge pages: madvise"
    if [ ! -e "$f" ]; then
        skip "$f does not exist"
    else
        case "$(readf "$f")" in
            *"[madvise]"*) say "already madvise" ;;
            *) put madvise "$f" ;;
        esac
    fi
}

# DAMON: stop running monitoring contexts (sysfs interface) and the built-in modules. Lasts
# until reboot; whatever started them (a boot script, a cloud agent) must be told as well.
apply_damon() {
    local admin=/sys/kernel/mm/damon/admin/kdamonds d m n=0
    step "DAMON proactive reclaim: off"
    for d in "$admin"/[0-9]*; do
        [ -d "$d" ] || continue
        if [ "$(readf "$d/state")" = on ]; then put off "$d/state"; n=$((n + 1)); fi
    done
    for m in damon_reclaim damon_lru_sort damon_stat; do
        if [ "$(readf "/sys/module/$m/parameters/enabled")" = Y ]; then
            put N "/sys/module/$m/parameters/enabled"; n=$((n + 1))
        fi
    done
    if [ "$n" = 0 ]; then say "no DAMON context running"; fi
}

# ---------------------------------------------------------------- sysctls
# raise KEY TARGET: the target, or the current value if that is already higher
raise() {
    local cur
    cur=$(readf "/proc/sys/${1//.//}") || cur=""
    if is_uint "$cur" && [ "$cur" -gt "$2" ]; then printf '%s' "$cur"; else printf '%s' "$2"; fi
}
# raise_triple KEY "MIN DEF MAX": keep a higher current max
raise_triple() {
    local cur max tlo tdef tmax
    read -r tlo tdef tmax <<<"$2"
    cur=$(readf "/proc/sys/${1//.//}") || cur=""
    read -r _ _ max <<<"$cur"
    if is_uint "${max:-}" && [ "$max" -gt "$tmax" ]; then tmax=$max; fi
    printf '%s %s %s' "$tlo" "$tdef" "$tmax"
}

apply_sysctl() {
    local content
    step "sysctls: $SYSCTL_FILE (persistent) and loaded now"
    content="# ringmq host tuning, written by tuning/apply.sh; see tuning/README.md
# Do not swap the broker's memory out.
vm.swappiness = 1
# Accept queue and SYN backlog for many client connections (values never lowered).
net.core.somaxconn = $(raise net.core.somaxconn 4096)
net.ipv4.tcp_max_syn_backlog = $(raise net.ipv4.tcp_max_syn_backlog 4096)
# TCP buffers: allow 16 MiB per socket for high-bandwidth produce/fetch streams.
net.core.rmem_max = $(raise net.core.rmem_max 16777216)
net.core.wmem_max = $(raise net.core.wmem_max 16777216)
net.ipv4.tcp_rmem = $(raise_triple net.ipv4.tcp_rmem '4096 131072 16777216')
net.ipv4.tcp_wmem = $(raise_triple net.ipv4.tcp_wmem '4096 16384 16777216')"
    write_config "$SYSCTL_FILE" "$content"
    if command -v sysctl >/dev/null 2>&1; then
        run sysctl -e -p "$SYSCTL_FILE"
    else
        skip "sysctl command not found; the file is loaded at next boot"
    fi
}

apply_limits() {
    local content
    step "limits: $LIMITS_FILE (PAM logins of user $USER_NAME; systemd services use LimitMEMLOCK=/LimitNOFILE= instead)"
    content="# ringmq host tuning, written by tuning/apply.sh; see tuning/README.md
# glommio registers ~10 MiB of I/O buffers per executor with io_uring (locked memory).
$USER_NAME soft memlock unlimited
$USER_NAME hard memlock unlimited
# The broker keeps 3 files per segment open, plus one socket per client.
$USER_NAME soft nofile 1048576
$USER_NAME hard nofile 1048576"
    write_config "$LIMITS_FILE" "$content"
    say "takes effect at the user's next login"
}

if [ "$DRY_RUN" = 1 ]; then
    echo "apply.sh --dry-run: printing the commands; nothing is changed."
else
    echo "apply.sh: applying ringmq host tuning."
fi
apply_block
apply_governor
apply_thp
apply_damon
apply_sysctl
apply_limits

echo
if [ "$DRY_RUN" = 1 ]; then
    echo "dry run done; nothing was changed."
elif [ "$NERR" -gt 0 ]; then
    echo "done with $NERR error(s); see ERROR lines above. Check with tuning/check.sh."
    exit 1
else
    echo "done. Check with tuning/check.sh --data-dir $DATA_DIR"
fi
exit 0
