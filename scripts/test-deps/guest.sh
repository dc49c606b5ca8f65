#!/usr/bin/env bash
# The real Linux guest of the tests (test/support/guest.ts, test/guest.test.ts), built once: a Debian
# cloud kernel and an initramfs (busybox, the ten virtio/SCSI modules, scripts/guest/init.sh as /init)
# for direct kernel boot under QEMU (TCG). Everything comes from Debian's packages (apt-get download
# + dpkg-deb -x; nothing is installed on the host). The result goes to
# ${TETHER_GUEST_CACHE:-~/.cache/tether/guest}/<kernel release>-<hash>/, where <hash> covers this
# script and the init: it is rebuilt only when one of them changes. Nothing is downloaded at test time.
# Alone: bash scripts/test-deps/guest.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib/apt.sh"

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cache=${TETHER_GUEST_CACHE:-$HOME/.cache/tether/guest}
# Same inputs, same order as guestSourceHash() in test/support/guest.ts.
hash=$(cat "$root/scripts/test-deps/guest.sh" "$root/scripts/guest/init.sh" | sha256sum | cut -c1-12)

for manifest in "$cache"/*-"$hash"/manifest.json; do
  if [ -f "$manifest" ]; then
    say "present: $(dirname "$manifest")"
    exit 0
  fi
done

# Load order: each module after the ones it depends on (checked below against their depends=).
modules=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci scsi_common scsi_mod sd_mod virtio_scsi virtio_blk)
# no_timer_check: the kernel's IO-APIC timer check can fail under TCG on a busy host ("MP-BIOS bug: 8254 timer
# not connected"); VMs do not need it.
cmdline='console=ttyS0 quiet panic=-1 no_timer_check'

# The kernel the cloud meta-package points at now (the lists may be stale: then update once and retry).
kernel_package() {
  apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }'
}
download() {
  (cd "$work" && rm -f ./*.deb && apt-get download -q "$kernel_pkg" busybox-static >/dev/null)
}

work=$(mktemp -d)
staging="$cache/.building-$$"
trap 'rm -rf "$work" "$staging"' EXIT
# apt fetches as its _apt user: give it the folder (else apt warns and downloads as root).
if id _apt >/dev/null 2>&1; then chown _apt "$work"; fi

# One apt-get update per set-up run (scripts/setup-tests.sh shares TETHER_APT_STAMP between its parts).
apt_updated() { [[ -n "${TETHER_APT_STAMP:-}" && -s "$TETHER_APT_STAMP" ]]; }
apt_update() {
  say "apt-get update"
  as_root apt-get -o DPkg::Lock::Timeout=600 -qq update || die "apt-get update failed"
  if [[ -n "${TETHER_APT_STAMP:-}" ]]; then echo updated >"$TETHER_APT_STAMP"; fi
}

start=$(date +%s)
kernel_pkg=$(kernel_package)
if [ -z "$kernel_pkg" ] && ! apt_updated; then
  apt_update
  kernel_pkg=$(kernel_package)
fi
[ -n "$kernel_pkg" ] || die "cannot tell which kernel linux-image-cloud-amd64 depends on (apt-cache depends linux-image-cloud-amd64)"
say "downloading $kernel_pkg and busybox-static"
if ! download; then
  # stale package lists name a version the mirror no longer has
  apt_updated && die "apt-get download $kernel_pkg busybox-static failed"
  apt_update
  kernel_pkg=$(kernel_package)
  download || die "apt-get download $kernel_pkg busybox-static failed"
fi
kernel_release=${kernel_pkg#linux-image-}
dpkg-deb -x "$work"/linux-image-*.deb "$work/kernel"
dpkg-deb -x "$work"/busybox-static_*.deb "$work/busybox"
kernel_version=$(dpkg-deb -f "$work"/linux-image-*.deb Version)
busybox_version=$(dpkg-deb -f "$work"/busybox-static_*.deb Version)
busybox="$work/busybox/bin/busybox"

rootfs="$work/rootfs"
mkdir -p "$rootfs"/{bin,dev,proc,sys,tmp,lib/modules}
cp "$busybox" "$rootfs/bin/busybox"
ln -s busybox "$rootfs/bin/sh"
install -m 755 "$root/scripts/guest/init.sh" "$rootfs/init"
loaded=' '
for m in "${modules[@]}"; do
  ko=$(find "$work/kernel/lib/modules/$kernel_release" -name "$m.ko" -print -quit)
  if [ -z "$ko" ]; then
    die "$m.ko is not in $kernel_pkg (is it built in now? then drop it from the list in $0)"
  fi
  for dep in $(tr '\0' '\n' <"$ko" | sed -n 's/^depends=//p' | tr ',' ' '); do
    if [[ "$loaded" != *" $dep "* ]]; then
      die "$m needs $dep, which is not loaded before it (fix the list in $0)"
    fi
  done
  cp "$ko" "$rootfs/lib/modules/"
  loaded="$loaded$m "
  echo "$m" >>"$rootfs/lib/modules/load-order"
done

out="$cache/$kernel_release-$hash"
mkdir -p "$staging"
cp "$work/kernel/boot/vmlinuz-$kernel_release" "$staging/vmlinuz"
(cd "$rootfs" && find . | LC_ALL=C sort | "$busybox" cpio -o -H newc 2>/dev/null) | gzip -9 >"$staging/initrd.img"
cat >"$staging/manifest.json" <<JSON
{
  "kernel": "vmlinuz",
  "initrd": "initrd.img",
  "cmdline": "$cmdline",
  "kernelPackage": "$kernel_pkg",
  "kernelVersion": "$kernel_version",
  "busyboxVersion": "$busybox_version",
  "sourceHash": "$hash"
}
JSON
chmod -R a+rX "$staging"
rm -rf "$out"
mv "$staging" "$out"
say "built $out ($(du -sh "$out" | cut -f1), $kernel_pkg $kernel_version, busybox $busybox_version) in $(( $(date +%s) - start )) s"
