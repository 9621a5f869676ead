#!/bin/bash
# Reproduce "a namespace create torn between two CXL DIMMs' label writes
# makes the whole region refuse to probe" without ndharness.
#
# QEMU gets a 2-way interleaved CXL pmem region (one host bridge, two root
# ports, two type-3 devices with persistent memory and a label area each,
# the options ndharness passes for its topology cxl-x2). In the guest,
# guest.sh (written next to the backing files and shared over 9p):
#   1. creates the region and initializes the labels,
#   2. saves position 1's label area, creates a 96 MiB fsdax namespace,
#   3. puts back the state a power cut between the two DIMMs' index writes
#      leaves (ndharness's crash point "before write 7"): position 0
#      keeps the new uuid's label with the UEFI UPDATING flag (the flag is
#      set again by hand: v1.1 labels have no checksum), position 1 gets
#      its label area from before the create (ndctl write-labels),
#   4. enables the region: an unpatched kernel says
#        nd_region region0: nmemN missing label for <uuid>
#      and the region stays disabled; a patched one says
#        ... missing label for <uuid>, skipping interrupted update
#      and the region comes up without the namespace.
# "./reproduce.sh reboot" then boots again on the same files and creates
# the region again with the labels kept, as after a real power cut.
#
# Needs: qemu-system-x86_64 with CXL (q35,cxl=on; QEMU 8.x or later) and
# virtfs; a guest kernel with CXL_BUS/CXL_PCI/CXL_ACPI/CXL_MEM/CXL_PMEM,
# CXL_REGION, LIBNVDIMM, BLK_DEV_PMEM, NVDIMM_PFN, 9P_FS and NET_9P_VIRTIO;
# a userland with a shell on ttyS0 and cxl, ndctl (74 or later; tested
# steps with 81), od, dd, sed, tr, dmesg.
#
# Usage:
#   KERNEL=bzImage INITRD=initramfs.cpio.gz ./reproduce.sh [create|reboot]
#   KERNEL=bzImage ROOTFS=disk.img ./reproduce.sh [create|reboot]
# Environment: WORK (default ./torn-label-work), QEMU, ACCEL (kvm or tcg;
# default kvm when /dev/kvm is usable), APPEND (more kernel arguments),
# QEMU_EXTRA (more QEMU arguments), NO_VIRTFS=1 (no 9p share: paste
# WORK/share/guest.sh into the guest instead).
# At the guest's shell:
#   mkdir -p /mnt/repro && mount -t 9p -o trans=virtio repro /mnt/repro &&
#   sh /mnt/repro/guest.sh create        (or: reboot)
# then power the guest off (poweroff -f, or Ctrl-a x).
set -euo pipefail

phase=${1:-create}
case $phase in create|reboot) ;; *) echo "usage: $0 [create|reboot]" >&2; exit 2 ;; esac
: "${KERNEL:?set KERNEL to the guest kernel (bzImage)}"
if [ -z "${INITRD:-}" ] && [ -z "${ROOTFS:-}" ]; then
	echo "set INITRD (initramfs) or ROOTFS (raw disk image, root=/dev/vda)" >&2
	exit 2
fi
WORK=${WORK:-./torn-label-work}
QEMU=${QEMU:-qemu-system-x86_64}
if [ -z "${ACCEL:-}" ]; then
	if [ -w /dev/kvm ]; then ACCEL=kvm; else ACCEL=tcg; fi
fi
here=$(cd "$(dirname "$0")" && pwd)

mkdir -p "$WORK/share"
WORK=$(cd "$WORK" && pwd)
if [ "$phase" = create ]; then
	# Fresh, sparse backing files: 256 MiB of persistent memory and a
	# 128 KiB label area per device.
	for i in 0 1; do
		rm -f "$WORK/cxl$i.mem" "$WORK/cxl$i.lsa"
		truncate -s 256M "$WORK/cxl$i.mem"
		truncate -s 128K "$WORK/cxl$i.lsa"
	done
elif [ ! -e "$WORK/cxl0.lsa" ]; then
	echo "no $WORK/cxl0.lsa: run '$0 create' first" >&2
	exit 2
fi

cat > "$WORK/share/guest.sh" <<'GUEST'
#!/bin/sh
# Guest side of reproduce.sh: sh guest.sh create|reboot
phase=${1:-create}
say() { echo "== $*"; }
die() { echo "guest.sh: $*" >&2; exit 2; }
wait_for() { # tries command...
	n=$1; shift
	while ! "$@" 2>/dev/null; do
		n=$((n - 1)); [ $n -gt 0 ] || return 1
		sleep 0.1
	done
}
memdev_by_serial() { # serial: sn=1 is position 0, sn=2 position 1
	for m in /sys/bus/cxl/devices/mem*; do
		[ -e "$m/serial" ] || continue
		[ $(($(cat "$m/serial"))) -eq "$1" ] && { basename "$m"; return 0; }
	done
	return 1
}
count() { ls -d $1 2>/dev/null | wc -l; }
two_memdevs() { memdev_by_serial 1 >/dev/null && memdev_by_serial 2 >/dev/null; }
two_nmems() { [ "$(count '/sys/bus/nd/devices/nmem*')" -ge 2 ] && [ -e /sys/bus/cxl/devices/decoder0.0 ]; }
nd_region() { # the nvdimm region with exactly two mappings
	for r in /sys/bus/nd/devices/region*; do
		[ -e "$r/mapping1" ] && [ ! -e "$r/mapping2" ] && { basename "$r"; return 0; }
	done
	return 1
}
verdict() {
	cat /sys/bus/nd/devices/ndbus*/wait_probe >/dev/null 2>&1
	dmesg | grep -E 'missing label for|interrupted update' | tail -n 3
	if [ -e "/sys/bus/nd/devices/$R/driver" ]; then
		say "$R probed; namespaces:"
		ndctl list -N -r "$R"
		echo "available $(cat /sys/bus/nd/devices/$R/available_size) of $(cat /sys/bus/nd/devices/$R/size) bytes"
		echo "RESULT: not reproduced: $R probes (a kernel with the fix skips the interrupted create)"
	else
		echo "RESULT: REPRODUCED: $R refused to probe; every namespace in it is unreachable"
	fi
}

modprobe -a cxl_acpi cxl_pci cxl_port cxl_mem cxl_pmem nd_pmem 2>/dev/null
wait_for 300 two_memdevs || die "no CXL memdevs with serials 1 and 2"
wait_for 300 two_nmems || die "no nmem devices (cxl_pmem) or no root decoder0.0"
m0=$(memdev_by_serial 1); m1=$(memdev_by_serial 2)
say "memdevs in position order: $m0 $m1"
cxl create-region -m -t pmem -d decoder0.0 -w 2 -g 256 "$m0" "$m1" >/dev/null ||
	echo "guest.sh: cxl create-region reported an error (carrying on)"
wait_for 100 nd_region || die "no nvdimm region with two mappings"
R=$(nd_region)
p0=$(cut -d, -f1 /sys/bus/nd/devices/$R/mapping0)
p1=$(cut -d, -f1 /sys/bus/nd/devices/$R/mapping1)
say "$R: position 0 $p0, position 1 $p1"

if [ "$phase" = reboot ]; then
	say "region created again on the kept labels, as after a power cut"
	verdict
	exit 0
fi

ndctl disable-region "$R" >/dev/null && ndctl init-labels -f "$p0" "$p1" >/dev/null &&
	ndctl enable-region "$R" >/dev/null || die "init-labels"
mkdir -p /tmp/repro
ndctl read-labels "$p1" -o /tmp/repro/p1-before.bin || die "read-labels $p1"
ndctl create-namespace -r "$R" -m fsdax -s 96M || die "create-namespace"
ns=
for n in /sys/bus/nd/devices/$R/namespace*; do
	[ "$(cat "$n/size")" != 0 ] && { ns=$n; break; }
done
[ -n "$ns" ] || die "no namespace after the create"
uuid=$(cat "$ns/uuid")
say "created $(basename "$ns"), uuid $uuid"

ndctl disable-region "$R" >/dev/null || die "disable-region"
ndctl read-labels "$p0" -o /tmp/repro/p0.bin || die "read-labels $p0"
# Index block 0 at 0 (256 bytes for 128 KiB), labels from 512, 128 bytes
# each in the v1.1 layout ndctl init-labels writes (minor version at 62).
[ "$(od -An -tu2 -j 62 -N 2 /tmp/repro/p0.bin | tr -d ' ')" = 1 ] ||
	die "label area is not v1.1 (v1.2 labels carry a checksum this script does not redo)"
hex=$(echo "$uuid" | sed 's/-//g'); marked=0; k=0
while [ $k -lt 16 ]; do
	off=$((512 + 128 * k))
	if [ "$(od -An -tx1 -v -j $off -N 16 /tmp/repro/p0.bin | tr -d ' \n')" = "$hex" ]; then
		# flags (le32 at 80): UPDATING is 0x8; a finished create leaves 0
		printf '\010' | dd of=/tmp/repro/p0.bin bs=1 seek=$((off + 80)) conv=notrunc 2>/dev/null
		marked=$((marked + 1))
	fi
	k=$((k + 1))
done
[ $marked -gt 0 ] || die "no label of $uuid in the first 16 slots of $p0"
ndctl write-labels "$p0" -i /tmp/repro/p0.bin >/dev/null || die "write-labels $p0"
ndctl write-labels "$p1" -i /tmp/repro/p1-before.bin >/dev/null || die "write-labels $p1"
say "torn set written: $p0 (position 0) holds $uuid marked UPDATING, $p1 (position 1) its labels from before the create"
echo "reproduce.sh: enabling $R on the torn label set" >/dev/kmsg 2>/dev/null
ndctl enable-region "$R"
verdict
say "power off now; ./reproduce.sh reboot on the host boots again on these label areas"
GUEST

echo "== work folder: $WORK (backing files, share/guest.sh)"
echo "== at the guest's shell:"
echo "   mkdir -p /mnt/repro && mount -t 9p -o trans=virtio repro /mnt/repro && sh /mnt/repro/guest.sh $phase"
echo "== then poweroff -f (or Ctrl-a x)"

boot=()
if [ -n "${INITRD:-}" ]; then
	boot+=(-initrd "$INITRD")
else
	boot+=(-drive "file=$ROOTFS,if=virtio,format=raw")
	APPEND="root=/dev/vda rw ${APPEND:-}"
fi

# The CXL topology: ndharness's cxl-x2 (harness/src/topology/cxl.rs,
# harness/src/vm/cmdline.rs). -cpu ...,hypervisor=off: region commit fails
# under a guest CPU that advertises a hypervisor ("Failed to synchronize
# CPU cache state").
cxl=(
	-device pxb-cxl,bus_nr=12,bus=pcie.0,id=cxl.0
	-M cxl-fmw.0.targets.0=cxl.0,cxl-fmw.0.size=8G,cxl-fmw.0.interleave-granularity=256
)
for i in 0 1; do
	cxl+=(
		-device "cxl-rp,port=$i,bus=cxl.0,id=rp0.$i,chassis=0,slot=$((i + 1))"
		-object "memory-backend-file,id=cxlmem$i,share=on,mem-path=$WORK/cxl$i.mem,size=256M"
		-object "memory-backend-file,id=cxllsa$i,share=on,mem-path=$WORK/cxl$i.lsa,size=128K"
		-device "cxl-type3,bus=rp0.$i,persistent-memdev=cxlmem$i,lsa=cxllsa$i,id=cxl-pmem$i,sn=$((i + 1))"
	)
done

# The 9p device on the root bus: left to QEMU, it lands on pxb-cxl's bus,
# which takes only bridges.
share=()
[ -n "${NO_VIRTFS:-}" ] ||
	share=(-fsdev "local,id=repro,path=$WORK/share,security_model=none"
		-device "virtio-9p-pci,fsdev=repro,mount_tag=repro,bus=pcie.0")

# shellcheck disable=SC2086 # QEMU_EXTRA is a list of arguments
"$QEMU" -nodefaults -no-user-config -display none -no-reboot \
	-machine q35,cxl=on -accel "$ACCEL" -cpu max,hypervisor=off \
	-smp 2 -m 1G \
	-kernel "$KERNEL" "${boot[@]}" -append "console=ttyS0 ${APPEND:-}" \
	-serial mon:stdio \
	"${cxl[@]}" \
	"${share[@]}" \
	${QEMU_EXTRA:-}

# The label areas as Linux reads them (the files are the devices' LSAs).
if command -v python3 >/dev/null && [ -e "$here/lsa-dump.py" ]; then
	echo "== label areas after the run (cxl0.lsa is position 0, cxl1.lsa position 1):"
	python3 "$here/lsa-dump.py" "$WORK/cxl0.lsa" "$WORK/cxl1.lsa"
fi
