#!/usr/bin/env bash
# The main job, end to end on a fresh machine: install and build (hack/setup.sh), make a store
# with the vfs driver under a temp dir, import a GNU tar of a real directory tree as a layer,
# create a child layer, change it (mount, modify, add, delete, unmount), and show its diff,
# changes and size, and the layer list. Everything it makes is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then echo "demo: run as root (layers keep file owners and devices)" >&2; exit 1; fi
bash hack/setup.sh

work=$(mktemp -d /tmp/layers-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
layers() { node bin/layers.js --root "$work/root" --runroot "$work/run" --driver vfs "$@"; }
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
echo "demo: ok"
