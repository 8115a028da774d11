#!/usr/bin/env bash
# Build pyvirt's test guests from Debian packages and gcc (no downloads).
#
#   guests/build.sh [all|tiny|linux|clean]     (default: all)
#
# Outputs (BUILD_DIR defaults to <repo>/build/guests):
#   $BUILD_DIR/tiny.elf                   multiboot v1 guest (QEMU -kernel)
#   $BUILD_DIR/linux/vmlinuz              Debian cloud kernel
#   $BUILD_DIR/linux/initramfs.cpio.gz    busybox initramfs
#
# Re-running is cheap: a target is rebuilt only when it is missing or one
# of its inputs is newer (or, for the Linux guest, the kernel changed).
#
# Environment overrides:
#   BUILD_DIR     output directory (a relative path is taken from the
#                 current directory)
#   CC            C compiler (default gcc; needs -m32 support)
#   LINUX_KERNEL  kernel image (default: newest /boot/vmlinuz-*-cloud-amd64)
#   BUSYBOX       statically linked busybox (default: /bin/busybox)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
BUILD_DIR="${BUILD_DIR:-$root/build/guests}"
CC="${CC:-gcc}"

log() { echo "build.sh: $*" >&2; }
die() { echo "build.sh: error: $*" >&2; exit 1; }

# need TOOL DEBIAN-PACKAGE
need() {
    command -v "$1" >/dev/null 2>&1 ||
        die "'$1' not found; install the Debian package '$2' (apt-get install $2)"
}

# stale TARGET INPUT...: true when TARGET is missing or older than an input.
stale() {
    local target="$1" f
    shift
    [ -e "$target" ] || return 0
    for f in "$@"; do
        [ "$f" -nt "$target" ] && return 0
    done
    return 1
}

# ---------------------------------------------------------------- tiny ---

build_tiny() {
    local src="$here/tiny" out="$BUILD_DIR/tiny.elf"
    local inputs=("$src/entry.S" "$src/tiny.c" "$src/link.ld" "$here/build.sh")

    if ! stale "$out" "${inputs[@]}"; then
        log "tiny: up to date ($out)"
        return
    fi
    need "$CC" gcc
    local libgcc
    libgcc="$("$CC" -m32 -print-libgcc-file-name 2>/dev/null || true)"
    [ -n "$libgcc" ] && [ -e "$libgcc" ] ||
        die "$CC cannot build 32-bit code; install the Debian package 'gcc-multilib' (apt-get install gcc-multilib)"

    mkdir -p "$BUILD_DIR"
    local tmp="$out.tmp.$$"
    # shellcheck disable=SC2064
    trap "rm -f '$tmp'" EXIT
    "$CC" -m32 -march=i686 -O2 -g0 -Wall -Wextra \
        -ffreestanding -nostdlib -fno-pic -fno-pie -no-pie -static \
        -fno-stack-protector -fno-asynchronous-unwind-tables -fno-builtin \
        -mno-sse -mno-mmx -mno-80387 \
        -Wl,--build-id=none -Wl,-z,max-page-size=0x1000 \
        -Wl,--no-warn-rwx-segments \
        -T "$src/link.ld" "$src/entry.S" "$src/tiny.c" -lgcc -o "$tmp"
    mv -f "$tmp" "$out"
    trap - EXIT
    log "tiny: built $out ($(wc -c < "$out") bytes)"
}

# --------------------------------------------------------------- linux ---

find_kernel() {
    if [ -n "${LINUX_KERNEL:-}" ]; then
        [ -r "$LINUX_KERNEL" ] || die "LINUX_KERNEL=$LINUX_KERNEL is not readable"
        echo "$LINUX_KERNEL"
        return
    fi
    local k
    k="$(ls -1 /boot/vmlinuz-*-cloud-amd64 2>/dev/null | sort -V | tail -n 1 || true)"
    [ -n "$k" ] ||
        die "no /boot/vmlinuz-*-cloud-amd64; install the Debian package 'linux-image-cloud-amd64' (apt-get install linux-image-cloud-amd64)"
    [ -r "$k" ] || die "$k is not readable"
    echo "$k"
}

# Print the modules (paths relative to /lib/modules/VER) that MOD needs,
# dependencies first, MOD last.  Uses modules.dep.
module_with_deps() {
    local depfile="$1" mod="$2" line deps d i
    line="$(grep -E "^([^:]*/)?${mod}\.ko(\.[a-z]+)?:" "$depfile" | head -n 1 || true)"
    [ -n "$line" ] || die "module $mod not found in $depfile"
    read -r -a deps <<< "${line#*:}"
    # modprobe loads the last listed dependency first
    for ((i = ${#deps[@]} - 1; i >= 0; i--)); do
        d="$(basename "${deps[$i]}")"
        d="${d%%.ko*}"
        module_with_deps "$depfile" "$d"
    done
    echo "${line%%:*}"
}

build_linux() {
    local out="$BUILD_DIR/linux" kernel ver config moddir busybox
    kernel="$(find_kernel)"
    ver="$(basename "$kernel")"
    ver="${ver#vmlinuz-}"
    config="/boot/config-$ver"
    moddir="/lib/modules/$ver"
    busybox="${BUSYBOX:-/bin/busybox}"

    need cpio cpio
    need gzip gzip
    [ -x "$busybox" ] ||
        die "$busybox not found; install the Debian package 'busybox-static' (apt-get install busybox-static)"
    if command -v readelf >/dev/null 2>&1 &&
        readelf -l "$busybox" 2>/dev/null | grep -q 'program interpreter'; then
        die "$busybox is dynamically linked; install the Debian package 'busybox-static' (apt-get install busybox-static)"
    fi
    [ -r "$config" ] || die "$config missing (it ships with the kernel package)"

    # Kernel modules needed for the power button: the ACPI button driver
    # and the evdev interface that busybox acpid reads.
    local symbol modname mods=() m
    for symbol in ACPI_BUTTON:button INPUT_EVDEV:evdev; do
        modname="${symbol#*:}"
        symbol="${symbol%%:*}"
        case "$(grep -E "^CONFIG_${symbol}=" "$config" || true)" in
            "CONFIG_${symbol}=y") ;;
            "CONFIG_${symbol}=m")
                [ -r "$moddir/modules.dep" ] ||
                    die "$moddir/modules.dep missing (it ships with the kernel package)"
                local list
                list="$(module_with_deps "$moddir/modules.dep" "$modname")"
                for m in $list; do
                    [[ " ${mods[*]-} " == *" $m "* ]] || mods+=("$m")
                done
                ;;
            *) die "kernel $ver lacks CONFIG_${symbol}; the power button cannot work" ;;
        esac
    done

    mkdir -p "$out"
    local stamp="$out/kernel-version" old_ver=""
    [ -r "$stamp" ] && old_ver="$(cat "$stamp")"

    # vmlinuz
    if [ "$old_ver" != "$ver" ] || stale "$out/vmlinuz" "$kernel"; then
        cp -f "$kernel" "$out/vmlinuz.tmp.$$"
        mv -f "$out/vmlinuz.tmp.$$" "$out/vmlinuz"
        log "linux: copied $kernel"
    else
        log "linux: vmlinuz up to date"
    fi

    # initramfs
    local img="$out/initramfs.cpio.gz"
    local inputs=("$here/linux/init" "$here/linux/power-button" "$here/build.sh"
        "$busybox" "$config")
    for m in "${mods[@]}"; do inputs+=("$moddir/$m"); done
    if [ "$old_ver" == "$ver" ] && ! stale "$img" "${inputs[@]}"; then
        log "linux: initramfs up to date ($img)"
        return
    fi

    local staging
    staging="$(mktemp -d "$out/initramfs.XXXXXX")"
    # shellcheck disable=SC2064
    trap "rm -rf '$staging' '$img.tmp'" EXIT
    mkdir -p "$staging"/{bin,dev,proc,sys,tmp,run,root,etc/acpi/PWRF,lib/modules,var/log}
    ln -s bin "$staging/sbin"
    mkdir -p "$staging/usr"
    ln -s ../bin "$staging/usr/bin"
    ln -s ../bin "$staging/usr/sbin"
    cp "$busybox" "$staging/bin/busybox"
    chmod 755 "$staging/bin/busybox"
    local applet
    for applet in $("$busybox" --list); do
        [ "$applet" = busybox ] || ln -s busybox "$staging/bin/$applet"
    done
    install -m 755 "$here/linux/init" "$staging/init"
    install -m 755 "$here/linux/power-button" "$staging/etc/acpi/PWRF/00000080"

    : > "$staging/etc/guest-modules"
    local base
    for m in "${mods[@]}"; do
        base="$(basename "$m")"
        case "$base" in
            *.ko) cp "$moddir/$m" "$staging/lib/modules/$base" ;;
            *.ko.xz) need xz xz-utils; xz -dc "$moddir/$m" > "$staging/lib/modules/${base%.xz}" ;;
            *.ko.zst) need zstd zstd; zstd -qdc "$moddir/$m" > "$staging/lib/modules/${base%.zst}" ;;
            *.ko.gz) gzip -dc "$moddir/$m" > "$staging/lib/modules/${base%.gz}" ;;
            *) die "unknown module file type: $m" ;;
        esac
        echo "${base%.ko*}.ko" >> "$staging/etc/guest-modules"
    done

    (cd "$staging" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
        cpio --null --create --format=newc --owner=0:0 --reproducible --quiet) |
        gzip -9 -n > "$img.tmp"
    mv -f "$img.tmp" "$img"
    rm -rf "$staging"
    trap - EXIT
    echo "$ver" > "$stamp.tmp" && mv -f "$stamp.tmp" "$stamp"
    log "linux: built $img ($(wc -c < "$img") bytes; kernel $ver; modules: ${mods[*]:-none})"
}

case "${1:-all}" in
    all) build_tiny; build_linux ;;
    tiny) build_tiny ;;
    linux) build_linux ;;
    clean) rm -rf "$BUILD_DIR/tiny.elf" "$BUILD_DIR/linux"; log "cleaned $BUILD_DIR" ;;
    -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" ;;
    *) die "unknown target '$1' (want all, tiny, linux or clean)" ;;
esac
