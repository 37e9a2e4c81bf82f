#!/usr/bin/env bash
# The main job, end to end on a fresh machine: install and build (hack/setup.sh), make a store
# with the vfs driver under a temp dir, import a GNU tar of a real directory tree as a layer,
# create a child layer, change it (mount, modify, add, delete, unmount), and show its diff,
# changes and size, and the layer list; then, on the overlay driver, make an image of the two
# layers, containers in two user namespaces (mapped top layers, one reused), and remove the image
# with `layers rm`. Everything it makes is removed at the end; it runs in a private mount
# namespace, so no mount it makes is seen outside.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then echo "demo: run as root (layers keep file owners and devices)" >&2; exit 1; fi
if [ -z "${LAYERS_DEMO_NS:-}" ]; then
  bash hack/setup.sh
  LAYERS_DEMO_NS=1 exec unshare -m --propagation private -- bash "$0" "$@"
fi

work=$(mktemp -d /tmp/layers-demo.XXXXXX)
trap 'for m in "$work"/oroot/overlay/*/merged; do umount "$m" 2>/dev/null || true; done; rm -rf "$work"' EXIT
layers() { node bin/layers.js --root "$work/root" --runroot "$work/run" --driver vfs "$@"; }
olayers() { node bin/layers.js --root "$work/oroot" --runroot "$work/orun" --driver overlay "$@"; }
step() { printf '\n== %s\n' "$*"; }

step "a directory tree: files, a big file, a hardlink, a symlink, a fifo, odd modes and owners"
tree=$work/tree
mkdir -p "$tree"/{etc/app,usr/bin,usr/share/doc,var/log,tmp}
echo demo-host > "$tree/etc/hostname"
printf 'listen=8080\nworkers=4\n' > "$tree/etc/app/app.conf"
head -c 20M /dev/urandom > "$tree/usr/bin/app"
chmod 755 "$tree/usr/bin/app"
ln "$tree/usr/bin/app" "$tree/usr/bin/app-hardlink"
ln -s app "$tree/usr/bin/app-symlink"
echo "read me" > "$tree/usr/share/doc/README"
mkfifo "$tree/var/log/pipe"
chmod 1777 "$tree/tmp"
chown -R 1000:1000 "$tree/var/log"
tar --numeric-owner -C "$tree" -cf "$work/base.tar" .
ls -l "$work/base.tar"

step "layers import-layer -n base -f base.tar"
layers import-layer -n base -f "$work/base.tar"
step "its diff-digest is the sha256 of the tar"
layers layer --json base | python3 -c 'import json,sys; r=json.load(sys.stdin)[0]; print(r["diff-digest"], r["diff-size"], "uids", r["uidset"])'
sha256sum "$work/base.tar"

step "layers create-layer -n child base"
layers create-layer -n child base

step "change the child: mount, modify, add, delete, unmount"
dir=$(layers mount child)
echo "mounted at $dir"
echo workers=8 >> "$dir/etc/app/app.conf"
echo "new file" > "$dir/etc/app/extra.conf"
rm "$dir/usr/share/doc/README"
chmod 700 "$dir/usr/bin/app"
layers unmount child

step "layers changes child"
layers changes child
step "layers diffsize child"
layers diffsize child
step "layers diff -f child.tar child; tar -tvf child.tar"
layers diff -f "$work/child.tar" child
tar --numeric-owner -tvf "$work/child.tar"
step "layers diff child | gzip (to a pipe)"
layers diff child | gzip -c | wc -c

step "layers layers; layers layers --tree"
layers layers
layers layers --tree
if command -v containers-storage >/dev/null; then
  step "the same store as containers-storage sees it"
  containers-storage --graph "$work/root" --run "$work/run" --storage-driver vfs layers
fi

step "clean up: layers wipe"
layers wipe
layers layers

step "overlay: the same two tars as layers base and child, and an image 'app' on child"
olayers import-layer -n base -f "$work/base.tar" >/dev/null
olayers import-layer -n child -f "$work/child.tar" base >/dev/null
olayers create-image -n app child
olayers images

step "containers in user namespaces: c1 and c3 share one mapped top layer, c2 gets another"
olayers create-container -n c1 --uidmap 0:100000:65536 --gidmap 0:100000:65536 app
olayers create-container -n c2 --uidmap 0:200000:65536 --gidmap 0:200000:65536 app
olayers create-container -n c3 --uidmap 0:100000:65536 --gidmap 0:100000:65536 app
olayers image app
for c in c1 c2; do
  dir=$(olayers mount "$c")
  printf '%s sees: ' "$c"; (cd "$dir" && stat -c '%n %u:%g' etc/hostname var/log | tr '\n' ' '); echo
  olayers unmount "$c" >/dev/null
done
olayers layers

step "layers rm app: refused while containers use it"
if olayers rm app; then echo "demo: rm should have refused" >&2; exit 1; fi
step "layers rm --force app: containers, mapped top layers, then the top layer and its parents"
olayers rm --force app
olayers layers
ls "$work/oroot/overlay"
echo "demo: ok"
