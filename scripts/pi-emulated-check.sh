#!/usr/bin/env bash
# Prove the device path on Raspberry Pi OS arm64 (Debian 12 bookworm, Python 3.11), emulated with qemu-user.
#
#   sudo bash scripts/pi-emulated-check.sh          (needs root on a Debian x86-64 machine; about 5 minutes)
#
# Builds a minimal bookworm arm64 root, installs edgeflower[edge] + onnxruntime from the registry's aarch64 wheels
# at the host's versions, runs `edgeflower classify --images` (and a functional `edgeflower bench`) inside it on
# a few real photos, and compares with the same commands on the host: the same labels, quantized outputs within one
# quantization step of each output tensor, float outputs within 1e-5 (scripts/pi_compare.py says why; docs/pi.md).
# Timings under emulation mean nothing: this checks correctness only.
#
# Environment: PI_CPU=cortex-a72 (Pi 4, default) or cortex-a76 (Pi 5); PI_WORK=dir (default .cache/pi-check);
# PI_KEEP_ROOT=1 reuses a finished root from an earlier run; PYTHON=host python with edgeflower[all].
set -euo pipefail

HERE="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-$HERE/.venv/bin/python}"
WORK="${PI_WORK:-$HERE/.cache/pi-check}"
ROOTFS="$WORK/root"
PI_CPU="${PI_CPU:-cortex-a72}"
MIRROR="${PI_MIRROR:-http://deb.debian.org/debian}"
MOUNTS=()
T0=$(date +%s)

say() { echo "[pi-check $(( $(date +%s) - T0 ))s] $*"; }
die() { echo "[pi-check] FAIL: $*" >&2; exit 1; }

cleanup() {
  local m
  for (( i=${#MOUNTS[@]}-1; i>=0; i-- )); do
    m="${MOUNTS[$i]}"
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || echo "[pi-check] warning: could not unmount $m" >&2
  done
  MOUNTS=()
}
trap cleanup EXIT INT TERM

mnt() {  # mnt TARGET ARGS...: mount and remember for cleanup
  local target="$1"; shift
  mount "$@" "$target"
  MOUNTS+=("$target")
}

[ "$(id -u)" = 0 ] || die "run as root (debootstrap, chroot and mounts need it)"
[ "$(uname -m)" = x86_64 ] || say "note: host is $(uname -m), not x86_64"
[ -x "$PYTHON" ] || die "no host Python with edgeflower at $PYTHON: run 'make setup' first or set PYTHON"
case "$PI_CPU" in cortex-a72) PART=0xd08; MODEL="Raspberry Pi 4 Model B Rev 1.5";;
                  cortex-a76) PART=0xd0b; MODEL="Raspberry Pi 5 Model B Rev 1.0";;
                  *) die "PI_CPU must be cortex-a72 or cortex-a76, got $PI_CPU";; esac

# 1. tools
need=()
command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
command -v update-binfmts >/dev/null || need+=(binfmt-support)
command -v debootstrap >/dev/null || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || die "cannot mount binfmt_misc (is this a privileged container?)"
fi
update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || die "qemu-aarch64 is not registered with binfmt_misc"

# 2. the arm64 root
mkdir -p "$WORK"
if [ "${PI_KEEP_ROOT:-0}" = 1 ] && [ -e "$ROOTFS/.edgeflower-root-ok" ]; then
  say "reusing $ROOTFS"
else
  rm -rf "$ROOTFS"
  say "debootstrap bookworm arm64 (first stage)"
  debootstrap --arch=arm64 --variant=minbase --foreign --include=python3,python3-venv,ca-certificates \
    bookworm "$ROOTFS" "$MIRROR" >"$WORK/debootstrap1.log" 2>&1 || { tail -20 "$WORK/debootstrap1.log"; die "debootstrap first stage"; }
  cp /usr/bin/qemu-aarch64-static "$ROOTFS/usr/bin/"
  say "debootstrap second stage (emulated dpkg: the slow part)"
  chroot "$ROOTFS" /debootstrap/debootstrap --second-stage >"$WORK/debootstrap2.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap2.log"; die "debootstrap second stage"; }
  touch "$ROOTFS/.edgeflower-root-ok"
fi
cp /usr/bin/qemu-aarch64-static "$ROOTFS/usr/bin/" 2>/dev/null || true

# 3. mounts: proc, sys, dev, and a Raspberry Pi cpuinfo over the host's x86 one
mnt "$ROOTFS/proc" -t proc proc
mnt "$ROOTFS/sys" --bind /sys
mnt "$ROOTFS/dev" --bind /dev
NCPU=$(( $(cut -d- -f2 /sys/devices/system/cpu/present) + 1 ))
CPUINFO="$WORK/cpuinfo"
: >"$CPUINFO"
for (( c=0; c<NCPU; c++ )); do
  printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: %s\nCPU revision\t: 3\n\n' "$c" "$PART" >>"$CPUINFO"
done
printf 'Hardware\t: BCM2835\nRevision\t: c03115\nSerial\t\t: 10000000deadbeef\nModel\t\t: %s\n' "$MODEL" >>"$CPUINFO"
mnt "$ROOTFS/proc/cpuinfo" --bind "$CPUINFO"
grep -q "CPU part.*$PART" "$ROOTFS/proc/cpuinfo" || die "the Raspberry Pi cpuinfo is not visible inside the root"

# network and pip configuration of the host
cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf" 2>/dev/null || true
[ -f /etc/ssl/certs/ca-certificates.crt ] && cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
for f in /etc/pip.conf /root/.pip/pip.conf /root/.config/pip/pip.conf; do
  if [ -f "$f" ]; then mkdir -p "$ROOTFS$(dirname "$f")"; cp "$f" "$ROOTFS$f"; fi
done
PIP_ENV=$(env | grep -E '^(PIP_INDEX_URL|PIP_EXTRA_INDEX_URL|PIP_CERT|PIP_TRUSTED_HOST|PIP_DEFAULT_TIMEOUT|https?_proxy|HTTPS?_PROXY|no_proxy|NO_PROXY)=' | grep -v FIND_LINKS || true)

run_pi() {  # run a command inside the emulated root as a Pi would
  # shellcheck disable=SC2086
  env -i PATH=/opt/ef/venv/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 QEMU_CPU="$PI_CPU" \
    EDGEFLOWER_NO_PROGRESS=1 PIP_DISABLE_PIP_VERSION_CHECK=1 $PIP_ENV chroot "$ROOTFS" "$@"
}
[ "$(run_pi uname -m)" = aarch64 ] || die "the root does not run as aarch64"
run_pi python3 -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' || die "the root's Python is not 3.11"

# 4. edgeflower's wheel, installed from the registry's aarch64 wheels at the host's versions
say "building edgeflower's wheel on the host"
rm -rf "$WORK/wheel" && mkdir -p "$WORK/wheel"
"$PYTHON" -m pip wheel -q --no-deps --no-build-isolation -w "$WORK/wheel" "$HERE" >/dev/null
WHEEL=$(ls "$WORK/wheel"/edgeflower-*.whl | head -1)
pin() { "$PYTHON" -c "import importlib.metadata as m; print('$1==' + m.version('$1'))"; }
PINS="$(pin ai-edge-litert) $(pin onnxruntime) $(pin numpy) $(pin pillow) $(pin simplejpeg) $(pin click) \
  $(pin opencv-python-headless)"
mkdir -p "$ROOTFS/opt/ef"
rm -rf "$ROOTFS/opt/ef/wheel" && cp -r "$WORK/wheel" "$ROOTFS/opt/ef/wheel"
if [ ! -x "$ROOTFS/opt/ef/venv/bin/pip" ]; then
  say "creating the venv inside the root"
  run_pi python3 -m venv /opt/ef/venv || die "python3 -m venv failed inside the root"
fi
say "pip install edgeflower[edge] $PINS (aarch64 wheels)"
# shellcheck disable=SC2086
run_pi /opt/ef/venv/bin/pip install -q --force-reinstall --no-deps "/opt/ef/wheel/$(basename "$WHEEL")" \
  >"$WORK/pip.log" 2>&1 || { tail -20 "$WORK/pip.log"; die "pip install of the wheel failed"; }
# shellcheck disable=SC2086
run_pi /opt/ef/venv/bin/pip install -q "/opt/ef/wheel/$(basename "$WHEEL")[edge]" $PINS \
  >>"$WORK/pip.log" 2>&1 || { tail -20 "$WORK/pip.log"; die "pip install edgeflower[edge] failed inside the root"; }
run_pi /opt/ef/venv/bin/python -c "import sys, edgeflower.edge, ai_edge_litert, onnxruntime; assert 'tensorflow' not in sys.modules" \
  || die "the edge runtime does not import on arm64"

# 5. a small model and real photos, exported on the host
say "exporting a small model on the host"
FIX="$WORK/fixture"
"$PYTHON" "$HERE/scripts/pi_fixture.py" "$FIX" >"$WORK/fixture.log" 2>&1 || { tail -20 "$WORK/fixture.log"; die "exporting the fixture model failed"; }
say "$(tail -1 "$WORK/fixture.log")"
say "fixture hashes in $FIX/fingerprint.json (a rerun on this machine builds the same bytes)"
rm -rf "$ROOTFS/opt/ef/work" && mkdir -p "$ROOTFS/opt/ef/work"
cp -r "$FIX/export" "$FIX/images" "$ROOTFS/opt/ef/work/"
mkdir -p "$WORK/host" "$ROOTFS/opt/ef/work/out"
rm -f "$WORK/host"/*.jsonl

ARTS=$(cd "$FIX/export" && ls ./*.tflite ./*.onnx | sed 's|^\./||')  # the CNN's four and lite0_*'s four
for a in $ARTS; do
  say "classify --images with $a (host, then emulated $PI_CPU)"
  (cd "$FIX" && "$PYTHON" -m edgeflower classify "export/$a" --images images --threshold 0 --min-similarity -1 --threads 1 --quiet \
     --jsonl "$WORK/host/$a.jsonl") 2>>"$WORK/host.log" || die "classify with $a failed on the host"
  set +e
  run_pi sh -c "cd /opt/ef/work && edgeflower classify export/$a --images images --threshold 0 --min-similarity -1 --threads 1 --quiet --jsonl out/$a.jsonl" \
    2>"$WORK/pi-$a.log"
  rc=$?
  set -e
  if [ $rc -ne 0 ]; then
    tail -5 "$WORK/pi-$a.log" >&2
    [ $rc -ge 128 ] && die "classify with $a crashed on emulated arm64 (signal $((rc - 128))): a segmentation fault here usually means the interpreter found no ARM core in /proc/cpuinfo"
    die "classify with $a failed on emulated arm64 (exit $rc)"
  fi
done
say "bench (functional check only: emulated timings mean nothing)"
run_pi sh -c "cd /opt/ef/work && edgeflower bench export/model_int8.tflite export/model_int8.onnx --threads 1 --runs 3 --warmup 1 --e2e-images 1 --no-accuracy --json out/bench.json" \
  >"$WORK/pi-bench.log" 2>&1 || { tail -5 "$WORK/pi-bench.log"; die "edgeflower bench failed on emulated arm64"; }
"$PYTHON" - "$ROOTFS/opt/ef/work/out/bench.json" <<'PY' || die "bench JSON from arm64 is malformed"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["environment"]["machine"] == "aarch64", r["environment"]["machine"]
for x in r["results"]:
    assert "error" not in x, x
    assert x["latency_ms"]["p50"] > 0
print("bench on arm64: ok (" + ", ".join(x["name"] for x in r["results"]) + ")")
PY

say "JPEG decode on arm64: simplejpeg gives Pillow's pixels (edgeflower/edge/jpeg.py)"
run_pi /opt/ef/venv/bin/python -c "
import glob, importlib
import numpy as np
from edgeflower.edge import jpeg
pre = importlib.import_module('edgeflower.edge.preprocess')
files = sorted(glob.glob('/opt/ef/work/images/*.jpg'))
sizes = (32, 64, 224)
fast = [[pre.preprocess(f, s) for s in sizes] for f in files]
used = sum(jpeg.decode(open(f, 'rb').read(), 224, pre.MAX_PIXELS) is not None for f in files)
jpeg.simplejpeg = None
same = sum(np.array_equal(a, pre.preprocess(f, s)) for f, row in zip(files, fast) for a, s in zip(row, sizes))
assert files and used == len(files) and same == len(files) * len(sizes), (len(files), used, same)
print(f'{len(files)} photos decoded by simplejpeg, the same pixels as Pillow at {sizes}')
" >"$WORK/pi-jpeg.log" 2>&1 || { tail -5 "$WORK/pi-jpeg.log"; die "simplejpeg and Pillow disagree on arm64"; }
say "$(tail -1 "$WORK/pi-jpeg.log")"

# 6. compare
"$PYTHON" "$HERE/scripts/pi_compare.py" "$WORK/host" "$ROOTFS/opt/ef/work/out" --models "$FIX/export" \
  || die "predictions differ beyond what is promised (QEMU_CPU=$PI_CPU; fixture $FIX/fingerprint.json)"
say "passed: Raspberry Pi OS arm64 (emulated $PI_CPU) gives the host's answers; no camera and no Pi timing were tested"
