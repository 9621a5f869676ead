#!/bin/sh
# cxl-test-region WAYS: a pmem region of WAYS memory devices on the kernel's
# mock CXL bus (cxl_test), made as ndctl's cxl-xor-region.sh makes it: on
# the pmem-capable root decoder with WAYS host bridges (4: the one with two,
# two devices below each), one device per host bridge position, in position
# order. Then the region's label areas are initialized (new ones read as
# label-less) and its names are printed and kept for the next steps:
# /run/cxl-region (the CXL region) and /run/nd-region (its nd region).
set -e
ways=$1
targets=$ways
per_bridge=1
if [ "$ways" = 4 ]; then
    targets=2
    per_bridge=2
fi
decoder=$(cxl list -b cxl_test -D -d root | jq -r "[.[] | select(.pmem_capable == true) |
    select(.nr_targets == $targets)][0].decoder")
if [ -z "$decoder" ] || [ "$decoder" = null ]; then
    echo "cxl_test has no pmem root decoder of $targets targets" >&2
    exit 1
fi
memdevs=""
slot=0
while [ "$slot" -lt "$per_bridge" ]; do
    position=0
    while [ "$position" -lt "$targets" ]; do
        port=$(cxl list -T -d "$decoder" | jq -r ".[] | .targets | .[] |
            select(.position == $position) | .target")
        # By serial: memN follows the asynchronous probe order.
        memdevs="$memdevs $(cxl list -M -p "$port" | jq -r "sort_by(.serial) | .[$slot].memdev")"
        position=$((position + 1))
    done
    slot=$((slot + 1))
done
before=$(ls /sys/bus/nd/devices | grep '^region' || true)
region=$(cxl create-region -d "$decoder" -m -t pmem -w "$ways" $memdevs | jq -r .region)
# The nd region it gets (on the CXL nvdimm bridge's bus), once it probed.
echo 1 >/sys/bus/cxl/flush
for f in /sys/bus/nd/devices/ndbus*/wait_probe; do cat "$f" >/dev/null; done
nd_region=""
for name in $(ls /sys/bus/nd/devices | grep '^region'); do
    echo "$before" | grep -qx "$name" || nd_region=$name
done
if [ -z "$nd_region" ]; then
    echo "$region (on $decoder:$memdevs) gave no nd region" >&2
    exit 1
fi
ndctl disable-region "$nd_region" >/dev/null
for nmem in $(ndctl list -R -r "$nd_region" -D | jq -r '.. | .dimm? // empty' | sort -u); do
    ndctl init-labels -f "$nmem" >/dev/null
done
ndctl enable-region "$nd_region" >/dev/null
echo "$region" >/run/cxl-region
echo "$nd_region" >/run/nd-region
echo "$region $nd_region"
