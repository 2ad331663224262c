#!/usr/bin/env bash
# Builds the job runner image raas-runner:<inputs-hash> (+ :latest) without any registry access.
#
# Fast no-op when an image for the current inputs already exists. Inputs (hashed into the tag):
# images/Dockerfile, images/runner-requirements.txt, this script, the parts of setup.cfg that
# concern gym_raas_mqtt, pyproject.toml, every source file of gym_raas_mqtt/ and the base image's
# ID. Steps:
#   1. base image: reuse a cached one; else `docker pull python:3.11-slim-bookworm` (20 s timeout);
#      else `debootstrap --variant=minbase --include=python3 bookworm` from the host's apt mirror,
#      `docker import`ed as raas-base:bookworm-v2 and its tarball cached in var/cache/.
#   2. wheelhouse on the host (.wheelhouse/runner): binary wheels for CPython 3.11 manylinux x86_64
#      from runner-requirements.txt, plus pip itself, plus a wheel of gym_raas_mqtt alone.
#   3. `docker build --network none` of images/Dockerfile from a staged context in build/.
#   4. var/raas-runner.json records tag, image ID and size (the node agent reports the image ID).
# Env: RAAS_RUNNER_IMAGE (default raas-runner), RAAS_DEBIAN_MIRROR (default: first Debian URI in
# /etc/apt/sources.list*), RAAS_RUNNER_BASE (use this local image as base instead), PYTHON (the host
# interpreter that builds wheels; default .venv/bin/python).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
IMAGE="${RAAS_RUNNER_IMAGE:-raas-runner}"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
[[ -x "$PY" ]] || PY="$(command -v python3)"
BASE_VERSION="bookworm-v2"  # bump when the debootstrap recipe below changes
BASE_TAG="raas-base:$BASE_VERSION"
BASE_TARBALL="$ROOT/var/cache/raas-base-$BASE_VERSION.tar.gz"
PULL_BASE="python:3.11-slim-bookworm"
CTX="$ROOT/build/runner-image"
WHEELS="$ROOT/.wheelhouse/runner"
t0=$(date +%s%N)
log() { printf 'images: %s\n' "$*" >&2; }
elapsed() { local ms=$((($(date +%s%N) - t0) / 1000000)); printf '%d.%01d' $((ms / 1000)) $((ms % 1000 / 100)); }

timeout 10 docker info >/dev/null 2>&1 || { log "Docker engine not reachable: run scripts/dockerd.sh start"; exit 1; }
mkdir -p "$ROOT/var/cache"
exec 9>"$ROOT/var/images.lock"
flock 9  # two concurrent builds would race on build/ and the tags

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

debian_mirror() {
  if [[ -n "${RAAS_DEBIAN_MIRROR:-}" ]]; then echo "$RAAS_DEBIAN_MIRROR"; return; fi
  local m
  m="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null \
       | grep -Eo '(URIs:[[:space:]]*|^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?)https?://[^[:space:]]+' \
       | grep -Eo 'https?://[^[:space:]]+' | grep -v -- '-security' | grep -E '/debian/?$' | head -n1)"
  echo "${m:-http://deb.debian.org/debian}"
}

make_base() {
  if [[ -n "${RAAS_RUNNER_BASE:-}" ]]; then echo "$RAAS_RUNNER_BASE"; return; fi
  if have_image "$BASE_TAG"; then echo "$BASE_TAG"; return; fi
  if have_image "$PULL_BASE"; then echo "$PULL_BASE"; return; fi
  if [[ -s "$BASE_TARBALL" ]]; then
    log "importing cached base $BASE_TARBALL"
    docker import "$BASE_TARBALL" "$BASE_TAG" >/dev/null
    echo "$BASE_TAG"; return
  fi
  log "trying docker pull $PULL_BASE (20 s)"
  if timeout 20 docker pull -q "$PULL_BASE" >/dev/null 2>&1; then echo "$PULL_BASE"; return; fi
  command -v debootstrap >/dev/null || { log "no registry and no debootstrap (apt-get install debootstrap)"; exit 1; }
  [[ "$(id -u)" == 0 ]] || { log "debootstrap needs root"; exit 1; }
  local mirror rootfs
  mirror="$(debian_mirror)"
  rootfs="$(mktemp -d "$ROOT/var/cache/rootfs.XXXXXX")"
  trap 'rm -rf "$rootfs"' RETURN
  log "no registry: debootstrap --variant=minbase bookworm from $mirror"
  mkdir -p "$ROOT/var/cache/debs"
  debootstrap --variant=minbase --include=python3 --cache-dir="$ROOT/var/cache/debs" \
    bookworm "$rootfs" "$mirror" >"$ROOT/var/cache/debootstrap.log" 2>&1 \
    || { log "debootstrap failed, see var/cache/debootstrap.log"; tail -n 15 "$ROOT/var/cache/debootstrap.log" >&2; exit 1; }
  # Nothing in the container may fetch or install packages, and docs/caches only add size.
  chroot "$rootfs" dpkg --purge apt libapt-pkg6.0 >>"$ROOT/var/cache/debootstrap.log" 2>&1
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/usr/share/doc/* \
         "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/var/log/*.log
  find "$rootfs"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name 'C.*' -exec rm -rf {} + 2>/dev/null || true
  tar -C "$rootfs" --numeric-owner -czf "$BASE_TARBALL.tmp" .
  mv "$BASE_TARBALL.tmp" "$BASE_TARBALL"
  docker import "$BASE_TARBALL" "$BASE_TAG" >/dev/null
  # Older recipes' bases are no longer needed.
  find "$ROOT/var/cache" -maxdepth 1 -name 'raas-base-*.tar.gz' ! -name "${BASE_TARBALL##*/}" -delete
  docker image ls --format '{{.Repository}}:{{.Tag}}' raas-base | grep -v ":$BASE_VERSION\$" \
    | xargs -r docker rmi >/dev/null 2>&1 || true
  echo "$BASE_TAG"
}

# The image's setup.cfg: only the fields the env package needs, so edits elsewhere in setup.cfg
# (other extras, pytest markers) do not change the hash and rebuild the image.
"$PY" - "$ROOT/var/cache/runner-setup.cfg" <<'EOF'
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
TAG="$IMAGE:$HASH"

record() {
  local id size
  id="$(docker image inspect --format '{{.Id}}' "$TAG")"
  size="$(docker image inspect --format '{{.Size}}' "$TAG")"
  docker tag "$TAG" "$IMAGE:latest"
  printf '{"tag": "%s", "image_id": "%s", "size_bytes": %s, "base": "%s", "inputs_hash": "%s"}\n' \
    "$TAG" "$id" "$size" "$BASE" "$HASH" >"$ROOT/var/raas-runner.json"
  log "$1 $TAG ($id, $((size / 1048576)) MiB) in $(elapsed) s"
}

if have_image "$TAG"; then record "up to date:"; exit 0; fi

log "building $TAG on $BASE"
mkdir -p "$WHEELS"
"$PY" -m pip download -q --disable-pip-version-check --only-binary=:all: \
  --python-version 3.11 --implementation cp --abi cp311 \
  --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
  -d "$WHEELS" -r images/runner-requirements.txt pip 2>&1 | grep -v "is ignored: it is neither" >&2 || true
for req in $(grep -Eo '^[A-Za-z0-9_.-]+==[^[:space:]]+' images/runner-requirements.txt); do
  name="${req%%==*}"; ver="${req##*==}"; glob="$(echo "$name" | tr 'A-Z-' 'a-z_')-$ver-"
  ls "$WHEELS"/ | tr 'A-Z' 'a-z' | grep -q "^$glob" || { log "wheel for $req missing from $WHEELS"; exit 1; }
done

rm -rf "$CTX"; mkdir -p "$CTX/wheels" "$CTX/project" "$CTX/src"
# A wheel of gym_raas_mqtt alone: the services (dispatcher, fleet_node, ...) never enter the image.
cp -r gym_raas_mqtt pyproject.toml "$CTX/src/"
find "$CTX/src" -name __pycache__ -prune -exec rm -rf {} +
cp "$ROOT/var/cache/runner-setup.cfg" "$CTX/src/setup.cfg"
"$PY" -m pip wheel -q --disable-pip-version-check --no-deps --no-build-isolation --no-index \
  -w "$CTX/project" "$CTX/src" 2>&1 | grep -v "is ignored: it is neither" >&2 || true
ls "$CTX"/project/gym_raas_mqtt-*.whl >/dev/null || { log "project wheel not built"; exit 1; }
while read -r w; do ln "$WHEELS/$w" "$CTX/wheels/$w" 2>/dev/null || cp "$WHEELS/$w" "$CTX/wheels/"; done \
  < <(ls "$WHEELS")
cp images/Dockerfile "$CTX/Dockerfile"
cp images/runner-requirements.txt "$CTX/requirements.txt"

# --network none: nothing may be downloaded during the build; everything is in the context.
DOCKER_BUILDKIT=0 docker build -q --network none --build-arg "BASE=$BASE" --build-arg "INPUTS=$HASH" \
  -t "$TAG" "$CTX" >"$ROOT/var/cache/build.log" 2>&1 \
  || { log "docker build failed, see var/cache/build.log"; tail -n 30 "$ROOT/var/cache/build.log" >&2; exit 1; }
rm -rf "$CTX"
record "built"
# Drop the build stage and older runner tags (`docker rmi` without -f refuses images still in use).
docker image prune -f --filter "label=raas.image" >/dev/null 2>&1 || true
docker image ls --format '{{.Repository}}:{{.Tag}}' "$IMAGE" | grep -v -e ":$HASH\$" -e ':latest$' \
  | xargs -r docker rmi >/dev/null 2>&1 || true
