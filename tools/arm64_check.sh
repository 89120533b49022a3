#!/usr/bin/env bash
# An aarch64 (Jetson-like) check of the torch-free edge encoder, under qemu-user emulation.
#
#   tools/arm64_check.sh [--bootstrap] [--reinstall] [--no-fp32] [--json OUT] [--work DIR]
#                        [--size HxW] [--steps N] [--intra-period N]
#
# In a Debian bookworm arm64 root (chroot; binaries run through qemu-aarch64 binfmt):
# installs this checkout with `pip install ".[edge]"` (numpy + onnxruntime aarch64
# wheels, the Cython kernels compiled there, no torch), encodes a simulated spike
# sequence with sci-edge-encode and a bundle exported on the host for `--cpu arm`;
# on the host encodes the same input, decodes the arm64 stream with the torch cloud
# decoder and checks it decodes exactly to the coded symbols (tools/arm64_compare.py).
# Times measured inside the root are EMULATED: they say nothing about a real Jetson.
#
# Environment: SCI_EDGE_ARM64_ROOT (default ~/.cache/sci-edge/arm64-root),
#   SCI_EDGE_ARM64_CPU (qemu CPU model, default cortex-a76: Armv8.2 with dot product,
#   no SVE / i8mm, the nearest qemu 7.2 model to the Jetson Orin's Cortex-A78AE),
#   SCI_EDGE_HOST_VENV (default: the checkout's .venv).
# Exit status: 0 PASS, 1 FAIL (a check failed), 2 usage, 3 cannot run here (a
# prerequisite is missing; the message says which and how to get it).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=${SCI_EDGE_ARM64_ROOT:-$HOME/.cache/sci-edge/arm64-root}
QEMU_CPU_MODEL=${SCI_EDGE_ARM64_CPU:-cortex-a76}
HOST_VENV=${SCI_EDGE_HOST_VENV:-$REPO/.venv}
SUITE=bookworm
INCLUDE=python3,python3-venv,python3-dev,gcc,g++,libc6-dev
# paths inside the root
SRC=/opt/sci_edge_src
VENV=/opt/sci_edge_venv
CHECK=/opt/sci_edge_check

BOOTSTRAP=0 REINSTALL=0 FP32=1 JSON_OUT="" WORK="" SIZE=96x96 STEPS=80 INTRA=4
usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --bootstrap) BOOTSTRAP=1 ;;
        --reinstall) REINSTALL=1 ;;
        --no-fp32) FP32=0 ;;
        --json) JSON_OUT=${2:?--json needs a path}; shift ;;
        --work) WORK=${2:?--work needs a folder}; shift ;;
        --size) SIZE=${2:?--size needs HxW}; shift ;;
        --steps) STEPS=${2:?--steps needs a number}; shift ;;
        --intra-period) INTRA=${2:?--intra-period needs a number}; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "arm64_check: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

say() { echo "arm64_check: $*"; }
fail() { echo "FAIL: $*"; exit 1; }
cannot() { echo "FAIL (cannot run here): $*"; exit 3; }

HINTS="needs: apt-get install debootstrap qemu-user-static binfmt-support; and
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc (if /proc/sys/fs/binfmt_misc is empty)"

# ---- 0. prerequisites ------------------------------------------------------------------
case "$(readlink -m "$ROOT")" in
    /|/usr|/etc|/opt|"$HOME") cannot "SCI_EDGE_ARM64_ROOT=$ROOT is not a chroot folder" ;;
esac
[ "$(id -u)" = 0 ] || cannot "must run as root (chroot and mount)"
[ -x "$HOST_VENV/bin/sci-edge" ] && [ -x "$HOST_VENV/bin/sci-edge-encode" ] \
    || cannot "$HOST_VENV/bin/sci-edge(-encode) not found: make install (or set SCI_EDGE_HOST_VENV)"
BINFMT=/proc/sys/fs/binfmt_misc/qemu-aarch64
if [ ! -f "$BINFMT" ] || ! grep -qx enabled "$BINFMT"; then
    cannot "no enabled qemu-aarch64 binfmt handler ($BINFMT); $HINTS"
fi
# the F flag opens the interpreter at registration: it then works inside a chroot
# without a copy of qemu there
grep -q '^flags:.*F' "$BINFMT" || [ -x "$ROOT/usr/bin/qemu-aarch64-static" ] \
    || cannot "the qemu-aarch64 binfmt handler lacks the F flag and $ROOT has no qemu-aarch64-static"

if [ ! -e "$ROOT" ]; then
    if [ "$BOOTSTRAP" = 1 ]; then
        command -v debootstrap >/dev/null || cannot "debootstrap not installed; $HINTS"
        say "bootstrapping $SUITE arm64 into $ROOT (about 15 min)"
        mkdir -p "$(dirname "$ROOT")"
        debootstrap --arch=arm64 --variant=minbase --include=$INCLUDE $SUITE "$ROOT" \
            || fail "debootstrap into $ROOT failed (see $ROOT/debootstrap/debootstrap.log)"
    else
        cannot "no arm64 root at $ROOT: run with --bootstrap (or set SCI_EDGE_ARM64_ROOT); $HINTS"
    fi
fi
# debootstrap removes ROOT/debootstrap/ when it finishes
[ ! -d "$ROOT/debootstrap" ] \
    || cannot "$ROOT is incomplete ($ROOT/debootstrap/ still exists: a debootstrap still running or one that failed; see its log)"
for f in usr/bin/python3 usr/bin/gcc usr/bin/g++; do
    [ -x "$ROOT/$f" ] || cannot "$ROOT/$f missing: bootstrap with --include=$INCLUDE"
done
ls -d "$ROOT"/usr/lib/python3.*/ensurepip >/dev/null 2>&1 \
    || cannot "$ROOT has no python3-venv (ensurepip): bootstrap with --include=$INCLUDE"

# ---- 1. mounts (undone on exit) and what pip needs inside ------------------------------
MOUNTED=()
cleanup() {
    local i
    for (( i=${#MOUNTED[@]}-1; i>=0; i-- )); do
        umount "${MOUNTED[$i]}" 2>/dev/null || umount -l "${MOUNTED[$i]}" 2>/dev/null \
            || echo "arm64_check: could not unmount ${MOUNTED[$i]}" >&2
    done
}
trap cleanup EXIT
mount_once() {   # mount_once TARGET mount-args...: only what is not mounted yet, and remember it
    local target=$1; shift
    mkdir -p "$target"
    if mountpoint -q "$target"; then return 0; fi
    mount "$@" "$target" || cannot "mount $* $target failed (needs CAP_SYS_ADMIN)"
    MOUNTED+=("$target")
}
mount_once "$ROOT/proc" -t proc proc
mount_once "$ROOT/sys" -t sysfs sysfs
mount_once "$ROOT/dev" --bind /dev
# qemu-user 7.2 passes the host's x86 /proc/cpuinfo through; onnxruntime's cpuinfo
# library then finds no Arm cores and crashes on import (SIGSEGV). An aarch64 one in
# its place: Cortex-A78AE (part 0xd42, as in a Jetson Orin), with the features qemu's
# cortex-a76 model reports in HWCAP (dot product, no SVE / i8mm)
CPUINFO="$ROOT/etc/sci-edge-cpuinfo"
FEATURES="fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"
: > "$CPUINFO"
for (( i=0; i<$(getconf _NPROCESSORS_CONF); i++ )); do
    printf 'processor\t: %d\nBogoMIPS\t: 62.50\nFeatures\t: %s\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd42\nCPU revision\t: 1\n\n' \
        "$i" "$FEATURES" >> "$CPUINFO"
done
mount --bind "$CPUINFO" "$ROOT/proc/cpuinfo" || cannot "bind-mounting $CPUINFO over $ROOT/proc/cpuinfo failed"
MOUNTED+=("$ROOT/proc/cpuinfo")

in_root() {   # in_root CMD...: run in the root, clean environment plus pip's settings
    local envs=(HOME=/root PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 QEMU_CPU="$QEMU_CPU_MODEL"
                PYTHONDONTWRITEBYTECODE=1)
    local v
    for v in $(compgen -e | grep '^PIP_' || true); do envs+=("$v=${!v}"); done
    chroot "$ROOT" /usr/bin/env -i "${envs[@]}" "$@"
}
in_root /bin/true 2>/dev/null || cannot "cannot execute in $ROOT (chroot under qemu-aarch64 failed); $HINTS"
[ "$(in_root /usr/bin/uname -m)" = aarch64 ] || fail "uname -m in $ROOT is not aarch64"

# pip inside uses this machine's CA bundle and pip configuration; local paths the
# configuration names (find-links folders, file:// indexes, constraint files) are
# made visible at the same paths, read-only
mkdir -p "$ROOT/etc/ssl/certs"
cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/ca-certificates.crt"
HOST_PIP=("$HOST_VENV/bin/python" -m pip)
for conf in /etc/pip.conf /etc/xdg/pip/pip.conf "$HOME/.config/pip/pip.conf" "$HOME/.pip/pip.conf"; do
    if [ -f "$conf" ]; then
        mkdir -p "$ROOT$(dirname "$conf")"
        cp "$conf" "$ROOT$conf"
        say "pip config copied: $conf"
    fi
done
PIP_PATHS=$({ "${HOST_PIP[@]}" config list 2>/dev/null | sed "s/^[^=]*=//; s/^'//; s/'$//"
              compgen -e | grep '^PIP_' | while read -r v; do echo "${!v}"; done; } \
            | tr ' ' '\n' | sed -n 's#^file://##; s#^\(/.*\)#\1#p' | sort -u)
for p in $PIP_PATHS; do
    [ -e "$p" ] || continue
    case "$p" in /proc*|/sys*|/dev*) continue ;; esac
    if [ -d "$p" ]; then
        # a file:// index's pages link to files beside simple/ (../../files/...)
        [ "$(basename "$p")" = simple ] && p=$(dirname "$p")
        mount_once "$ROOT$p" --bind "$p"
        mount -o remount,ro,bind "$ROOT$p" 2>/dev/null || true
    elif [ -f "$p" ]; then
        mkdir -p "$ROOT$(dirname "$p")"; cp "$p" "$ROOT$p"
    fi
done

# ---- 2. a clean copy of the source, and the edge install --------------------------------
# what .gitignore ignores stays behind (virtualenv, build outputs, compiled kernels, runs)
TARBALL=$(mktemp /tmp/arm64_check_src.XXXXXX.tar)
trap 'rm -f "$TARBALL"; cleanup' EXIT
tar -C "$REPO" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --exclude-vcs \
    --exclude=./.venv --exclude=./build --exclude=./dist --exclude='*.egg-info' \
    --exclude=__pycache__ --exclude='*.so' --exclude='*.pyd' --exclude='./kernels/*.c' \
    --exclude='./kernels/*.cpp' --exclude='./kernels/*.html' --exclude=.pytest_cache \
    --exclude=./demo_out --exclude=./out --exclude=./runs --exclude=./export/out \
    --exclude=./sci_edge/profiling/profiles -cf "$TARBALL" .
# the install depends on the package, not on tests/ or tools/: editing those keeps it
SRC_HASH=$({ tar -tvf "$TARBALL" --exclude=./tests --exclude=./tools
             tar -xOf "$TARBALL" --exclude=./tests --exclude=./tools; } | sha256sum | cut -d' ' -f1)
INSTALL_S=""
STAMP="$ROOT$VENV/.sci_edge_source.sha256"
if [ "$REINSTALL" = 0 ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$SRC_HASH" ] \
        && in_root "$VENV/bin/python" -c "import sci_edge._kernels.rans" 2>/dev/null; then
    say "edge install in $ROOT$VENV is of this source (sha256 ${SRC_HASH:0:12}): kept"
else
    rm -rf "$ROOT$SRC"; mkdir -p "$ROOT$SRC"
    tar -C "$ROOT$SRC" -xf "$TARBALL"
    [ -f "$ROOT$VENV/pyvenv.cfg" ] || { say "creating $VENV in the root";
        in_root /usr/bin/python3 -m venv "$VENV" || fail "python3 -m venv $VENV in $ROOT failed"
        # bookworm's pip 23.0 predates the metadata (2.4, license expressions) setuptools>=77 writes
        in_root "$VENV/bin/python" -m pip install --progress-bar off --upgrade pip \
            || fail "pip upgrade in $ROOT$VENV failed (no index reachable from the root?)"; }
    say "pip install \".[edge]\" in the root (emulated: numpy/onnxruntime wheels, kernels compiled)"
    t0=$(date +%s)
    in_root /bin/sh -c "cd $SRC && $VENV/bin/python -m pip install --progress-bar off '.[edge]'" \
        || fail "pip install .[edge] in $ROOT failed (output above)"
    INSTALL_S=$(( $(date +%s) - t0 ))
    say "pip install took $INSTALL_S s (emulated)"
    echo "$SRC_HASH" > "$STAMP"
fi
# the point of .[edge]: nothing in the install may have brought torch
if in_root "$VENV/bin/python" -m pip show torch >/dev/null 2>&1; then
    fail "torch is installed in $ROOT$VENV: .[edge] must be torch-free"
fi

# ---- 3. inputs on the host: bundle for the Arm CPU target, a small simulated scene ------
WORK=${WORK:-$(mktemp -d /tmp/arm64_check.XXXXXX)}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
say "host work folder: $WORK"
"$HOST_VENV/bin/sci-edge" export bundle --out "$WORK/bundle" --cpu arm --no-trt-int8 \
    --size "$SIZE" --json > "$WORK/export.json" || fail "bundle export failed (see $WORK/export.json)"
"$HOST_VENV/bin/sci-edge" simulate camera --size "$SIZE" --steps "$STEPS" --seed 7 --quiet \
    --json -o "$WORK/spikes.npz" > "$WORK/simulate.json" || fail "simulate failed"
rm -rf "$ROOT$CHECK"; mkdir -p "$ROOT$CHECK"
cp -r "$WORK/bundle" "$ROOT$CHECK/bundle"
cp "$WORK/spikes.npz" "$ROOT$CHECK/spikes.npz"
cp "$REPO/tools/arm64_compare.py" "$ROOT$CHECK/arm64_compare.py"

# ---- 4. probe and encode inside the root (EMULATED) -------------------------------------
# run from $CHECK, not the source copy, so the installed package (with kernels) is imported
in_root /bin/sh -c "cd $CHECK && $VENV/bin/python arm64_compare.py probe --json probe.json" \
    > "$WORK/probe.log" || { cat "$WORK/probe.log"; fail "probe in $ROOT failed"; }
cp "$ROOT$CHECK/probe.json" "$WORK/probe.json"
say "arm64 root: $(tr -d '\n ' < "$WORK/probe.json" | head -c 400)"

PRECS=(int8); [ "$FP32" = 1 ] && PRECS+=(fp32)
for prec in "${PRECS[@]}"; do
    say "encoding in the root, $prec (emulated)"
    t0=$(date +%s.%N)
    in_root /bin/sh -c "cd $CHECK && $VENV/bin/sci-edge-encode spikes.npz -o arm64_$prec.sci \
        --bundle bundle --precision $prec --intra-period $INTRA --quiet --json > arm64_$prec.json" \
        || fail "sci-edge-encode ($prec) in $ROOT failed"
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f\n", b - a }' > "$WORK/arm64_$prec.wall_s"
    say "emulated $prec encode: $(cat "$WORK/arm64_$prec.wall_s") s wall (process start included)"
    # the same encode through the API, keeping the symbols q the encoder coded
    in_root /bin/sh -c "cd $CHECK && $VENV/bin/python arm64_compare.py symbols --bundle bundle \
        --input spikes.npz --precision $prec --intra-period $INTRA \
        --out-sci arm64_${prec}_api.sci --out-npz arm64_${prec}_symbols.npz" \
        || fail "encoding through the API ($prec) in $ROOT failed"
    cp "$ROOT$CHECK/arm64_$prec.sci" "$ROOT$CHECK/arm64_$prec.json" \
       "$ROOT$CHECK/arm64_${prec}_api.sci" "$ROOT$CHECK/arm64_${prec}_symbols.npz" "$WORK/"
    say "host encoding, $prec (x86)"
    "$HOST_VENV/bin/sci-edge-encode" "$WORK/spikes.npz" -o "$WORK/x86_$prec.sci" \
        --bundle "$WORK/bundle" --precision $prec --intra-period $INTRA --quiet --json \
        > "$WORK/x86_$prec.json" || fail "host sci-edge-encode ($prec) failed"
done

# ---- 5. decode on the host and compare ---------------------------------------------------
JSON_OUT=${JSON_OUT:-$WORK/summary.json}
ARGS=(--work "$WORK" --precisions "$(IFS=,; echo "${PRECS[*]}")" --json "$JSON_OUT")
[ -n "$INSTALL_S" ] && ARGS+=(--install-s "$INSTALL_S")
set +e
"$HOST_VENV/bin/python" "$REPO/tools/arm64_compare.py" compare "${ARGS[@]}"
rc=$?
set -e
[ "$rc" = 2 ] && fail "arm64_compare.py could not compare (error above)"
say "summary: $JSON_OUT"
if [ "$rc" = 0 ]; then
    echo "PASS: aarch64 (emulated) edge install is torch-free and its streams decode exactly on the host"
    exit 0
fi
fail "a stream does not decode exactly, or the root is not a torch-free aarch64 install (see $JSON_OUT)"
