# Shared by check.sh and apply.sh (sourced, not run).

is_uint() { case "$1" in ''|*[!0-9]*) return 1 ;; *) return 0 ;; esac; }

# leaf_disks SYSDIR: print the whole-disk sysfs dirs under a device (partition -> disk,
# dm/md -> their slaves, recursively).
leaf_disks() {
    local d s found=0 depth=${2:-0}
    d=$(readlink -f -- "$1" 2>/dev/null) || return 0
    [ -d "$d" ] || return 0
    if [ -e "$d/partition" ]; then d=${d%/*}; fi
    if [ "$depth" -lt 8 ] && [ -d "$d/slaves" ]; then
        for s in "$d"/slaves/*; do
            [ -e "$s" ] || continue
            found=1
            leaf_disks "$s" $((depth + 1))
        done
    fi
    if [ "$found" = 0 ]; then printf '%s\n' "$d"; fi
}

# resolve_dir PATH: the nearest existing directory at or above PATH (the data dir may not
# exist yet; its filesystem is that of its first existing parent).
resolve_dir() {
    local d=$1
    while [ ! -d "$d" ]; do
        case "$d" in
            */*) d=${d%/*}; [ -n "$d" ] || d=/ ;;
            *) d=. ;;
        esac
    done
    printf '%s' "$d"
}
