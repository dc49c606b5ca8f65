#!/bin/sh
# /init of tether's test guest: busybox, no udev, direct kernel boot (built by scripts/test-deps/guest.sh).
# It loads the virtio/SCSI modules, then serves one command per line on the serial console
# (ttyS0, a unix socket on the host; test/support/guest.ts drives it):
#   ""                              -> "TETHER-GUEST-READY" (the host sends empty lines until it sees one)
#   TAG disks                       -> "TAG disk NAME BYTES SERIAL" for every disk, then "TAG rc=0"
#   TAG write SERIAL BYTES PATTERN  -> writes PATTERN\n repeated (BYTES in all) at the start of the disk, fsync;
#                                      "TAG sha256 SUM" of what it wrote
#   TAG read SERIAL BYTES           -> "TAG sha256 SUM" of the disk's first BYTES (page cache dropped first)
#   TAG rescan SERIAL               -> asks the SCSI layer to re-read the disk's size (no-op for virtio)
#   TAG sh COMMAND...               -> runs COMMAND in this shell
# Every command ends with "TAG rc=N"; every line it prints starts with "TAG ".
# A disk is found by its serial (the volume id): /sys/block/vdX/serial for virtio (QEMU keeps its
# first 20 characters), /sys/block/sdX/device/vpd_pg80 after a 4-byte header for SCSI.
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
dmesg -n 1
for m in $(cat /lib/modules/load-order); do
  insmod "/lib/modules/$m.ko" || echo "tether-guest: insmod $m failed" >/dev/ttyS0
done
exec </dev/ttyS0 >/dev/ttyS0 2>&1
stty -echo -onlcr

serial_of() {
  if [ -r "$1/serial" ]; then
    cat "$1/serial"
  elif [ -r "$1/device/vpd_pg80" ]; then
    tail -c +5 "$1/device/vpd_pg80" | tr -d '\000'
  fi
}

# The block device (e.g. vda) whose serial is $1 or, for virtio's 20 characters, a prefix of it.
disk_of() {
  for d in /sys/block/vd* /sys/block/sd*; do
    [ -e "$d" ] || continue
    s=$(serial_of "$d" | tr -d ' ')
    [ -n "$s" ] || continue
    if [ "$s" = "$1" ] || { [ ${#s} -ge 20 ] && [ "${1#"$s"}" != "$1" ]; }; then
      echo "${d##*/}"
      return 0
    fi
  done
  echo "no disk with serial $1"
  return 1
}

cmd_disks() {
  for d in /sys/block/vd* /sys/block/sd*; do
    [ -e "$d" ] || continue
    echo "disk ${d##*/} $(($(cat "$d/size") * 512)) $(serial_of "$d" | tr -d ' ')"
  done
}

cmd_write() {
  dev=$(disk_of "$1") || { echo "$dev"; return 1; }
  yes "$3" | head -c "$2" | dd of="/dev/$dev" bs=65536 conv=fsync 2>/dev/null || return 1
  echo "sha256 $(yes "$3" | head -c "$2" | sha256sum | cut -d' ' -f1)"
}

cmd_read() {
  dev=$(disk_of "$1") || { echo "$dev"; return 1; }
  sync
  echo 3 >/proc/sys/vm/drop_caches
  echo "sha256 $(head -c "$2" "/dev/$dev" | sha256sum | cut -d' ' -f1)"
}

cmd_rescan() {
  dev=$(disk_of "$1") || { echo "$dev"; return 1; }
  [ ! -e "/sys/block/$dev/device/rescan" ] || echo 1 >"/sys/block/$dev/device/rescan"
}

echo TETHER-GUEST-READY
while :; do
  if ! IFS= read -r line; then
    sleep 1
    continue
  fi
  line=$(echo "$line" | tr -d '\r')
  if [ -z "$line" ]; then
    echo TETHER-GUEST-READY
    continue
  fi
  set -- $line
  tag=$1
  cmd=${2:-}
  shift 2 2>/dev/null || shift $#
  case "$cmd" in
    disks) cmd_disks >/tmp/out 2>&1 ;;
    write) cmd_write "$@" >/tmp/out 2>&1 ;;
    read) cmd_read "$@" >/tmp/out 2>&1 ;;
    rescan) cmd_rescan "$@" >/tmp/out 2>&1 ;;
    sh) eval "$*" >/tmp/out 2>&1 ;;
    *) echo "unknown command: $cmd" >/tmp/out; false ;;
  esac
  rc=$?
  while IFS= read -r out; do echo "$tag $out"; done </tmp/out
  echo "$tag rc=$rc"
done
