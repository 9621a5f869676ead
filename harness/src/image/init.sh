#!/bin/sh
# PID 1 of an ndharness guest: mount, load the topology's modules, keep the
# kernel log, and hand the guest to qemu-guest-agent.
export PATH=/usr/sbin:/usr/bin:/usr/libexec/busybox
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /run /tmp
# What udev would make: bash's process substitution reads /dev/fd/N.
ln -sf /proc/self/fd /dev/fd
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mount -t configfs configfs /sys/kernel/config 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null

# Every kernel record, with its sequence number, for the harness to attribute
# to the step that caused it. cat ends when the ring overwrites unread records;
# the harness drops records it has already seen by sequence number.
(while :; do cat /dev/kmsg; done) >>/run/kmsg.log 2>/dev/null &

mock_buses=
for arg in $(cat /proc/cmdline); do
    case "$arg" in
    ndharness.modules=*) modules=$(echo "${arg#ndharness.modules=}" | tr , ' ') ;;
    ndharness.mock_buses) mock_buses=1 ;;
    esac
done
# A kernel with mock modules (nfit_test's and cxl_test's builds of the
# drivers, in updates/) has two indexes: the default names the real
# drivers, mock-index/ the mocks, for a topology with a mock bus.
release_dir=/lib/modules/$(uname -r)
if [ -n "$mock_buses" ] && [ -d "$release_dir/mock-index" ]; then
    cp "$release_dir"/mock-index/modules.* "$release_dir"/
fi
# A name ending in `?` is a helper the kernel may lack (built in, or gone
# since: crc32c_generic on 7.x), loaded only where modprobe knows it.
for m in $modules; do
    case "$m" in
    *\?) m=${m%\?}; modprobe -n -q "$m" 2>/dev/null || continue ;;
    esac
    modprobe "$m" || echo "ndharness: modprobe $m failed" >/dev/kmsg
done

# Where virtio_console is a module (Debian's 6.1), its ports appear a moment
# after modprobe returns.
port=
i=0
while [ -z "$port" ] && [ $i -lt 100 ]; do
    for p in /sys/class/virtio-ports/*; do
        [ "$(cat "$p/name" 2>/dev/null)" = org.qemu.guest_agent.0 ] && port=/dev/${p##*/}
    done
    [ -n "$port" ] && [ -e "$port" ] && break
    port=
    i=$((i + 1))
    sleep 0.1
done
if [ -z "$port" ]; then
    echo "ndharness: no virtio port named org.qemu.guest_agent.0" >/dev/kmsg
    poweroff -f
fi
echo "ndharness: init ready, agent on $port" >/dev/kmsg
# From here on the serial console shows warnings and worse (a WARN, an
# Oops, a panic: what the harness watches it for); every record still goes
# to /run/kmsg.log. Each info line sent through the emulated UART cost a
# namespace create about a third of its time under TCG. The boot before
# this point prints in full: the evidence of a guest that never got here.
echo 5 >/proc/sys/kernel/printk
qemu-ga -m virtio-serial -p "$port" -t /run
echo "ndharness: qemu-ga exited with $?" >/dev/kmsg
poweroff -f
