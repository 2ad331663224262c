#!/usr/bin/env bash
# Builds the job runner image for one CPU architecture without any registry access.
#
#   images/build.sh                      for this machine (x86_64 → amd64, aarch64 → arm64):
#                                        raas-runner:<inputs-hash> and raas-runner:latest
#   images/build.sh --arch arm64         cross-build on another machine, under qemu-user-static:
#                                        raas-runner:<inputs-hash>-arm64 and raas-runner:latest-arm64
#   images/build.sh --arch A --wheels-only      only resolve the wheelhouse of A (no Docker needed)
#   images/build.sh --arch A --check-emulation  only set up emulation of A (binfmt_misc); exit 3
#                                               with the reason when this machine cannot
#
# Fast no-op when an image for the current inputs already exists. Inputs (hashed into the tag):
# the architecture, images/Dockerfile, images/runner-requirements.txt, this script, the parts of
# setup.cfg that concern gym_raas_mqtt, pyproject.toml, every source file of gym_raas_mqtt/ and
# the base image's ID. Steps:
#   0. cross-build only: binfmt_misc mounted and qemu-<cpu> registered with the F flag (the kernel
#      opens the interpreter once, so it also works inside the chroot and inside containers).
#   1. base image raas-base:bookworm-v2[-<arch>]: reuse it; else build it from the cached rootfs
#      tarball var/cache/raas-base-bookworm-v2[-<arch>].tar.gz; else (native only) `docker pull
#      python:3.11-slim-bookworm` (20 s timeout); else `debootstrap --foreign --arch <arch>
#      --variant=minbase --include=python3 bookworm` from the host's apt mirror, second stage in a
#      chroot (emulated when cross-building), tarball cached.
#   2. wheelhouse on the host (.wheelhouse/runner-<arch>): binary wheels for CPython 3.11 manylinux
#      <cpu> from runner-requirements.txt, plus a wheel of gym_raas_mqtt alone (pure Python).
#   3. `pip install --target --platform ... --no-index` of those wheels on the host (byte-compiled
#      natively; the pinned packages' tree is kept in var/cache/site-<arch>-<key> per pin set, so
#      their image layer stays in Docker's build cache), staged with the env package's tree in
#      build/, then `docker build --platform linux/<arch> --network none` of images/Dockerfile:
#      only its RUN steps run emulated.
#   4. var/raas-runner-<arch>.json (and var/raas-runner.json for a native build) records tags,
#      image ID, architecture and size (the node agent reports the image ID).
# Exit codes: 0 built or up to date, 1 build failed, 2 bad usage, 3 cannot emulate <arch> here.
# Env: RAAS_RUNNER_IMAGE (repository, default raas-runner; a tag in it is ignored), RAAS_DEBIAN_MIRROR
# (default: first Debian URI in /etc/apt/sources.list*), RAAS_RUNNER_BASE (use this local image as
# base instead), PYTHON (the host interpreter that runs pip; default .venv/bin/python, best a 3.11).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
t0=$(date +%s%N)
log() { printf 'images: %s\n' "$*" >&2; }
elapsed() { local ms=$((($(date +%s%N) - t0) / 1000000)); printf '%d.%01d' $((ms / 1000)) $((ms % 1000 / 100)); }

ARCH="" MODE=build
while (($#)); do
  case "$1" in
    --arch) ARCH="${2:?--arch needs amd64 or arm64}"; shift 2 ;;
    --arch=*) ARCH="${1#*=}"; shift ;;
    --wheels-only) MODE=wheels; shift ;;
    --check-emulation) MODE=emulation; shift ;;
    -h | --help) sed -n '2,11p' "${BASH_SOURCE[0]}" | cut -c3-; exit 0 ;;
    *) log "unknown argument $1 (see --help)"; exit 2 ;;
  esac
done

docker_arch() {  # a `uname -m` or Docker architecture name → Docker's name
  case "$1" in
    x86_64 | amd64) echo amd64 ;;
    aarch64 | arm64) echo arm64 ;;
    *) return 1 ;;
  esac
}
HOST_ARCH="$(docker_arch "$(uname -m)")" \
  || { log "unsupported machine $(uname -m): images exist for amd64 and arm64 (a Pi needs a 64-bit OS)"; exit 2; }
ARCH_ARG="${ARCH:-$HOST_ARCH}"
ARCH="$(docker_arch "$ARCH_ARG")" || { log "unsupported --arch $ARCH_ARG: amd64 or arm64"; exit 2; }
# A cross-built artifact carries the architecture in its name, so it never replaces the native one.
SUFFIX=""
[[ "$ARCH" == "$HOST_ARCH" ]] || SUFFIX="-$ARCH"
case "$ARCH" in
  amd64) CPU=x86_64 ;;
  arm64) CPU=aarch64 ;;
esac

IMAGE="${RAAS_RUNNER_IMAGE:-raas-runner}"
# The node's RAAS_RUNNER_IMAGE names a tag (raas-runner:latest); a build needs the repository.
[[ "${IMAGE##*/}" != *:* ]] || IMAGE="${IMAGE%:*}"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
[[ -x "$PY" ]] || PY="$(command -v python3)"
BASE_VERSION="bookworm-v2"  # bump when the debootstrap recipe below changes
BASE_TAG="raas-base:$BASE_VERSION$SUFFIX"
BASE_TARBALL="$ROOT/var/cache/raas-base-$BASE_VERSION$SUFFIX.tar.gz"
PULL_BASE="python:3.11-slim-bookworm"
STAGE="$ROOT/build/runner-image"
CTX="$STAGE/context"
WHEELS="$ROOT/.wheelhouse/runner-$ARCH"
CACHE="$ROOT/var/cache"

mkdir -p "$CACHE"
exec 9>"$ROOT/var/images.lock"
flock 9  # two concurrent builds would race on build/, the wheelhouse and the tags

# -- emulation (cross-builds only) ------------------------------------------------------------
BINFMT=/proc/sys/fs/binfmt_misc
cannot_emulate() { local why="$*"; log "cannot cross-build linux/$ARCH on $(uname -m): ${why//$'\n'/ }"; exit 3; }

ensure_emulation() {
  local entry="$BINFMT/qemu-$CPU" conf="/usr/lib/binfmt.d/qemu-$CPU.conf" err
  if [[ ! -e "$BINFMT/register" ]]; then
    err="$(mount -t binfmt_misc binfmt_misc "$BINFMT" 2>&1)" \
      || cannot_emulate "binfmt_misc is not mounted and mounting it failed (needs root): ${err:-?}"
  fi
  if [[ ! -e "$entry" ]]; then
    [[ -r "$conf" ]] || cannot_emulate "$conf missing (apt-get install qemu-user-static)"
    err="$( { cat "$conf" >"$BINFMT/register"; } 2>&1)" \
      || cannot_emulate "registering qemu-$CPU in $BINFMT failed (needs root): ${err:-?}"
    log "registered qemu-$CPU with binfmt_misc ($conf)"
  fi
  grep -qx enabled "$entry" || cannot_emulate "$entry is disabled (echo 1 > $entry)"
  # Without F the kernel looks the interpreter up inside the chroot or container, where it is absent.
  grep -Eq '^flags: *[A-Z]*F' "$entry" \
    || cannot_emulate "$entry lacks the F (fix-binary) flag; re-register it from $conf"
}

# -- wheelhouse --------------------------------------------------------------------------------
resolve_wheels() {  # $1 = strict: fail when the index cannot be reached even if the wheels are here
  local wlog="$CACHE/wheels-$ARCH.log" req name ver glob
  mkdir -p "$WHEELS"
  if ! "$PY" -m pip download --disable-pip-version-check --only-binary=:all: \
      --python-version 3.11 --implementation cp --abi cp311 \
      --platform "manylinux_2_28_$CPU" --platform "manylinux2014_$CPU" \
      -d "$WHEELS" -r images/runner-requirements.txt >"$wlog" 2>&1; then
    ((!$1)) || { log "pip download for linux/$ARCH failed, see $wlog"; tail -n 15 "$wlog" >&2; exit 1; }
    log "pip download failed (package index unreachable?); trying the cached wheelhouse"
  fi
  for req in $(grep -Eo '^[A-Za-z0-9_.-]+==[^[:space:]]+' images/runner-requirements.txt); do
    name="${req%%==*}"; ver="${req##*==}"; glob="$(echo "$name" | tr 'A-Z-' 'a-z_')-$ver-"
    ls "$WHEELS"/ | tr 'A-Z' 'a-z' | grep -Eq "^$glob.*(-none-any|_$CPU)\.whl\$" \
      || { log "no $CPU wheel for $req in $WHEELS (see $wlog)"; exit 1; }
  done
}

if [[ "$MODE" == wheels ]]; then
  resolve_wheels 1
  log "wheelhouse for linux/$ARCH resolved: $(ls "$WHEELS" | wc -l) wheels in $WHEELS ($(elapsed) s)"
  exit 0
fi
if [[ -n "$SUFFIX" ]]; then
  ensure_emulation
  [[ "$MODE" == build ]] || { log "linux/$ARCH runs here under qemu-$CPU (binfmt_misc, F flag)"; exit 0; }
elif [[ "$MODE" == emulation ]]; then
  log "linux/$ARCH is this machine's own architecture: no emulation needed"; exit 0
fi

timeout 10 docker info >/dev/null 2>&1 || { log "Docker engine not reachable: run scripts/dockerd.sh start"; exit 1; }
have_image() { docker image inspect "$1" >/dev/null 2>&1; }

# -- base image --------------------------------------------------------------------------------
debian_mirror() {
  if [[ -n "${RAAS_DEBIAN_MIRROR:-}" ]]; then echo "$RAAS_DEBIAN_MIRROR"; return; fi
  local m
  m="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null \
       | grep -Eo '(URIs:[[:space:]]*|^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?)https?://[^[:space:]]+' \
       | grep -Eo 'https?://[^[:space:]]+' | grep -v -- '-security' | grep -E '/debian/?$' | head -n1)"
  echo "${m:-http://deb.debian.org/debian}"
}

import_base() {  # the cached rootfs tarball → $BASE_TAG
  # `docker import` would label any rootfs with the host's architecture (this engine ignores its
  # --platform); a FROM scratch build records linux/$ARCH, which the runner build below requires.
  local ctx
  ctx="$(mktemp -d "$CACHE/base-ctx.XXXXXX")"
  ln "$BASE_TARBALL" "$ctx/rootfs.tar.gz" 2>/dev/null || cp "$BASE_TARBALL" "$ctx/rootfs.tar.gz"
  printf 'FROM scratch\nADD rootfs.tar.gz /\n' >"$ctx/Dockerfile"
  DOCKER_BUILDKIT=0 docker build -q --platform "linux/$ARCH" --network none -t "$BASE_TAG" "$ctx" \
    >"$CACHE/base-import$SUFFIX.log" 2>&1 \
    || { log "importing $BASE_TARBALL failed, see $CACHE/base-import$SUFFIX.log"; rm -rf "$ctx"; exit 1; }
  rm -rf "$ctx"
}

arch_suffix() { grep -Eo -- '-(amd64|arm64)$' <<<"$1" || true; }

drop_old_bases() {  # tarballs and images of older recipes, of this architecture family only
  local f tag
  for f in "$CACHE"/raas-base-*.tar.gz; do
    if [[ -e "$f" && "$f" != "$BASE_TARBALL" && "$(arch_suffix "${f%.tar.gz}")" == "$SUFFIX" ]]; then
      rm -f "$f"
    fi
  done
  for tag in $(docker image ls --format '{{.Tag}}' raas-base); do
    if [[ "$tag" != "$BASE_VERSION$SUFFIX" && "$(arch_suffix "$tag")" == "$SUFFIX" ]]; then
      docker rmi "raas-base:$tag" >/dev/null 2>&1 || true
    fi
  done
}

debootstrap_base() {
  command -v debootstrap >/dev/null || { log "no registry and no debootstrap (apt-get install debootstrap)"; exit 1; }
  [[ "$(id -u)" == 0 ]] || { log "debootstrap needs root"; exit 1; }
  local mirror rootfs dlog="$CACHE/debootstrap$SUFFIX.log"
  mirror="$(debian_mirror)"
  rootfs="$(mktemp -d "$CACHE/rootfs.XXXXXX")"
  trap 'rm -rf "$rootfs"; trap - RETURN' RETURN
  log "no registry: debootstrap --arch $ARCH --variant=minbase bookworm from $mirror"
  mkdir -p "$CACHE/debs"
  # Two stages for every architecture: the second runs the target's own binaries in a chroot,
  # natively or through qemu (binfmt_misc), so native and cross-built bases come from one recipe.
  { debootstrap --foreign --arch="$ARCH" --variant=minbase --include=python3 \
      --cache-dir="$CACHE/debs" bookworm "$rootfs" "$mirror" \
    && chroot "$rootfs" /debootstrap/debootstrap --second-stage; } >"$dlog" 2>&1 \
    || { log "debootstrap failed, see $dlog"; tail -n 15 "$dlog" >&2; exit 1; }
  # Nothing in the container may fetch or install packages, and docs/caches only add size.
  chroot "$rootfs" dpkg --purge apt libapt-pkg6.0 >>"$dlog" 2>&1
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/usr/share/doc/* \
         "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/var/log/*.log
  find "$rootfs"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name 'C.*' -exec rm -rf {} + 2>/dev/null || true
  tar -C "$rootfs" --numeric-owner -czf "$BASE_TARBALL.tmp" .
  mv "$BASE_TARBALL.tmp" "$BASE_TARBALL"
}

make_base() {
  if [[ -n "${RAAS_RUNNER_BASE:-}" ]]; then echo "$RAAS_RUNNER_BASE"; return; fi
  if have_image "$BASE_TAG"; then echo "$BASE_TAG"; return; fi
  if [[ -z "$SUFFIX" ]] && have_image "$PULL_BASE"; then echo "$PULL_BASE"; return; fi
  if [[ -s "$BASE_TARBALL" ]]; then
    log "importing cached base $BASE_TARBALL"
    import_base; echo "$BASE_TAG"; return
  fi
  # Only natively: the pulled tag holds one architecture, so a cross pull would replace the native.
  if [[ -z "$SUFFIX" ]]; then
    log "trying docker pull $PULL_BASE (20 s)"
    if timeout 20 docker pull -q "$PULL_BASE" >/dev/null 2>&1; then echo "$PULL_BASE"; return; fi
  fi
  debootstrap_base
  import_base
  drop_old_bases
  echo "$BASE_TAG"
}

# The image's setup.cfg: only the fields the env package needs, so edits elsewhere in setup.cfg
# (other extras, pytest markers) do not change the hash and rebuild the image.
"$PY" - "$CACHE/runner-setup.cfg" <<'EOF'
import configparser, sys
src = configparser.ConfigParser(interpolation=None)
src.read("setup.cfg")
out = configparser.ConfigParser(interpolation=None)
out["metadata"] = {k: src["metadata"][k] for k in ("name", "version", "description", "license")}
out["options"] = {"python_requires": src["options"]["python_requires"],
                  "packages": "find:", "include_package_data": "True",
                  "install_requires": src["options"]["install_requires"]}
out["options.packages.find"] = {"include": "\ngym_raas_mqtt\ngym_raas_mqtt.*"}
out["options.package_data"] = {"gym_raas_mqtt": src["options.package_data"]["gym_raas_mqtt"]}
with open(sys.argv[1], "w") as f:
    out.write(f)
EOF

inputs_hash() {  # $1 = base image ID
  {
    echo "arch $ARCH"
    echo "base $1"
    find images/Dockerfile images/runner-requirements.txt images/build.sh var/cache/runner-setup.cfg \
         pyproject.toml \
         gym_raas_mqtt -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 \
      | LC_ALL=C sort -z | xargs -0 sha256sum
  } | sha256sum | cut -c1-12
}

BASE="$(make_base)"
BASE_ID="$(docker image inspect --format '{{.Id}}' "$BASE")"
HASH="$(inputs_hash "$BASE_ID")"
TAG="$IMAGE:$HASH$SUFFIX"
LATEST="$IMAGE:latest$SUFFIX"

record() {
  local id size arch json
  IFS=' ' read -r id size arch < <(docker image inspect --format '{{.Id}} {{.Size}} {{.Architecture}}' "$TAG")
  [[ "$arch" == "$ARCH" ]] || { log "$TAG is linux/$arch, expected linux/$ARCH"; exit 1; }
  docker tag "$TAG" "$LATEST"
  json="$(printf '{"tag": "%s", "latest": "%s", "arch": "%s", "image_id": "%s", "size_bytes": %s, "base": "%s", "inputs_hash": "%s"}' \
    "$TAG" "$LATEST" "$ARCH" "$id" "$size" "$BASE" "$HASH")"
  echo "$json" >"$ROOT/var/raas-runner-$ARCH.json"
  [[ -n "$SUFFIX" ]] || echo "$json" >"$ROOT/var/raas-runner.json"
  log "$1 $TAG = $LATEST (linux/$ARCH, $id, $((size / 1048576)) MiB) in $(elapsed) s"
}

if have_image "$TAG"; then record "up to date:"; exit 0; fi

# pip on the host, for the target: --platform/--abi pick the target's wheels from the wheelhouse,
# and pip byte-compiles with this (native) interpreter, so nothing is unpacked or compiled emulated.
pip_target() {  # $1 = directory, then pip install arguments
  local dir="$1"; shift
  "$PY" -m pip install -q --disable-pip-version-check --no-index --find-links "$WHEELS" \
    --only-binary=:all: --python-version 3.11 --implementation cp --abi cp311 \
    --platform "manylinux_2_28_$CPU" --platform "manylinux2014_$CPU" --target "$dir" "$@" \
    >"$CACHE/site$SUFFIX.log" 2>&1 \
    || { log "pip install --target failed, see $CACHE/site$SUFFIX.log"; tail -n 15 "$CACHE/site$SUFFIX.log" >&2; exit 1; }
  rm -rf "$dir/bin"  # console scripts carrying the host's interpreter path
}

deps_site() {  # the pinned packages installed for $ARCH, kept per pin set: echoes the directory
  local key dir
  key="$( { echo "$ARCH"; "$PY" -VV; "$PY" -m pip -V | cut -d' ' -f2; cat images/runner-requirements.txt; } \
          | sha256sum | cut -c1-12)"
  dir="$CACHE/site-$ARCH-$key"
  if [[ ! -d "$dir" ]]; then
    # The same bytes every build (.pyc files embed their sources' mtimes), so the image layer
    # holding them comes from Docker's build cache until a pin changes.
    resolve_wheels 0
    rm -rf "$CACHE/site-$ARCH-"*
    pip_target "$dir.tmp" -r images/runner-requirements.txt
    mv "$dir.tmp" "$dir"
  fi
  echo "$dir"
}

log "building $TAG (linux/$ARCH) on $BASE"
DEPS="$(deps_site)"
rm -rf "$STAGE"; mkdir -p "$STAGE/src" "$STAGE/wheel" "$CTX"
# A wheel of gym_raas_mqtt alone: the services (dispatcher, fleet_node, ...) never enter the image.
# It is pure Python, so the host builds it for any architecture.
cp -r gym_raas_mqtt pyproject.toml "$STAGE/src/"
find "$STAGE/src" -name __pycache__ -prune -exec rm -rf {} +
cp "$CACHE/runner-setup.cfg" "$STAGE/src/setup.cfg"
"$PY" -m pip wheel -q --disable-pip-version-check --no-deps --no-build-isolation --no-index \
  -w "$STAGE/wheel" "$STAGE/src" 2>&1 | grep -v "is ignored: it is neither" >&2 || true
ls "$STAGE"/wheel/gym_raas_mqtt-*.whl >/dev/null || { log "project wheel not built"; exit 1; }
cp -al "$DEPS" "$CTX/site" 2>/dev/null || cp -a "$DEPS" "$CTX/site"
pip_target "$CTX/project" --no-deps "$STAGE"/wheel/gym_raas_mqtt-*.whl
cp images/Dockerfile "$CTX/Dockerfile"

# --network none: nothing may be downloaded during the build; everything is in the context.
# --platform: the legacy builder (docker.io on Debian 12 has no buildx) then takes the base of
# that architecture and runs the RUN steps under qemu when it is not the host's.
DOCKER_BUILDKIT=0 docker build -q --platform "linux/$ARCH" --network none \
  --build-arg "BASE=$BASE" --build-arg "INPUTS=$HASH" \
  -t "$TAG" "$CTX" >"$CACHE/build$SUFFIX.log" 2>&1 \
  || { log "docker build failed, see $CACHE/build$SUFFIX.log"; tail -n 30 "$CACHE/build$SUFFIX.log" >&2; exit 1; }
rm -rf "$STAGE"
record "built"
# Drop dangling images of earlier builds and this architecture's older runner tags (`docker rmi`
# without -f refuses images still in use).
docker image prune -f --filter "label=raas.image" >/dev/null 2>&1 || true
docker image ls --format '{{.Tag}}' "$IMAGE" | grep -E "^[0-9a-f]{12}$SUFFIX\$" | grep -vx "$HASH$SUFFIX" \
  | sed "s|^|$IMAGE:|" | xargs -r docker rmi >/dev/null 2>&1 || true
