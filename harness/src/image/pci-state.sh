#!/bin/sh
# Keeps PCI configuration space across a saved VM state. QEMU 10.0.2 saves
# none for CXL root ports, switch ports and type 3 devices, nor for
# virtio-pmem (their device classes have no migration description), so a
# restored guest finds them as after a reset: no bus numbers, no BARs,
# nothing decoded, and every device behind them unreachable.
#   pci-state save      copy the configuration header and capabilities (the
#                       first 256 bytes) of every device behind a host
#                       bridge other than pci0000:00 (CXL's pxb-cxl) and of
#                       every virtio-pmem device (1af4:105b) to /run
#   pci-state restore   write them back, bridges before what is behind
#                       them; prints each device it wrote
dir=/run/ndharness-pci
case "$1" in
save)
    rm -rf "$dir" && mkdir -p "$dir" || exit 1
    # Depth in the device tree first: a bridge's bus numbers and windows
    # make the devices behind it reachable.
    for d in /sys/bus/pci/devices/*; do
        p=$(readlink -f "$d")
        case "$p" in /sys/devices/pci0000:00/*)
            [ "$(cat "$d/vendor" "$d/device")" = "$(printf '0x1af4\n0x105b')" ] || continue ;;
        esac
        head -c 256 "$d/config" >"$dir/${d##*/}" || exit 1
        echo "$(echo "$p" | tr -cd / | wc -c) ${d##*/}"
    done | sort -n | cut -d' ' -f2 >"$dir/order.tmp" &&
        mv "$dir/order.tmp" "$dir/order"
    ;;
restore)
    [ -f "$dir/order" ] || { echo "pci-state: nothing saved in $dir" >&2; exit 1; }
    while read -r d; do
        saved=$dir/$d
        live=/sys/bus/pci/devices/$d/config
        # Whole dwords at their offsets: the header after the command
        # register, and the capabilities, then the command register, as the
        # kernel restores a header. Extended space (from 0x100) stays as
        # QEMU made it: its DOE mailbox registers are a protocol, not state
        # (a write queues a dword), and the drivers that program the rest
        # have not loaded yet.
        dd if="$saved" of="$live" bs=4 skip=2 seek=2 count=62 conv=notrunc 2>/dev/null &&
            dd if="$saved" of="$live" bs=4 skip=1 seek=1 count=1 conv=notrunc 2>/dev/null ||
            { echo "pci-state: writing $live failed" >&2; exit 1; }
        echo "$d"
    done <"$dir/order"
    ;;
*)
    echo "usage: pci-state save|restore" >&2
    exit 2
    ;;
esac
