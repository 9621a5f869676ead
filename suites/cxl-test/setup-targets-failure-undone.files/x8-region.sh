#!/bin/sh
# Brought by the case (suites/cxl-test/setup-targets-failure-undone.files/,
# at /case in the guest): an 8-way pmem region on cxl_test's window over
# both of its host bridges, made through sysfs but for its targets.
#
# The region gets a uuid, 8 ways, the window's granularity and 2 GiB; each
# of the window's 8 memdevs gets 256 MiB of pmem DPA. For each interleave
# position p the endpoint decoder that belongs there goes to /tmp/x8/posP,
# the region's name to /tmp/x8/region: the steps attach them.
#
# Position p is the host bridge at root position p % 2. Below a bridge its
# positions p, p + 2, p + 4, p + 6 alternate its two root ports (the bridge
# decodes 2 ways, so positions 4 apart share a root port), and the two
# devices below a root port (behind its switch) take its two turns. Which
# root port a memdev is under comes from its place in the device tree:
# cxl_test nests its platform devices host bridge / root port / switch /
# memdev.
set -e
d=/sys/bus/cxl/devices
s=/tmp/x8
mkdir -p $s

root=$(cxl list -b cxl_test -D -d root |
    jq -r '[.[] | select(.pmem_capable == true and .nr_targets == 2)][0].decoder')
if [ -z "$root" ] || [ "$root" = null ]; then
    echo "cxl_test has no pmem window over two host bridges" >&2
    exit 1
fi

for h in 0 1; do
    hb=$(cxl list -T -d "$root" | jq -r ".[] | .targets | .[] | select(.position == $h) | .target")
    for m in $(cxl list -M -p "$hb" | jq -r '.[].memdev'); do
        rp=$(readlink -f $d/$m | sed -n 's|.*/\(cxl_root_port\.[0-9]*\)/.*|\1|p')
        echo "$rp $m"
    done | sort >$s/bridge$h
    ports=$(cut -d' ' -f1 $s/bridge$h | uniq)
    if [ "$(echo $ports | wc -w)" != 2 ] || [ "$(wc -l <$s/bridge$h)" != 4 ]; then
        echo "$hb: expected two root ports with two memdevs each, found:" >&2
        cat $s/bridge$h >&2
        exit 1
    fi
    k=0
    for turn in 1 2; do
        for rp in $ports; do
            grep "^$rp " $s/bridge$h | sed -n "${turn}p" | cut -d' ' -f2 >$s/mem$((h + 2 * k))
            k=$((k + 1))
        done
    done
done

for p in 0 1 2 3 4 5 6 7; do
    m=$(cat $s/mem$p)
    cxl reserve-dpa -t pmem -s $((256 << 20)) "$m" >/dev/null
    cxl list -Di -d endpoint -m "$m" |
        jq -r '(if type == "array" then .[] else . end) | select(.mode == "pmem") | .decoder' >$s/pos$p
    if [ "$(wc -l <$s/pos$p)" != 1 ]; then
        echo "$m: expected one pmem endpoint decoder, found: $(cat $s/pos$p)" >&2
        exit 1
    fi
done

r=$(cat $d/$root/create_pmem_region)
echo "$r" >$d/$root/create_pmem_region
cat /proc/sys/kernel/random/uuid >$d/$r/uuid
echo 8 >$d/$r/interleave_ways
cat $d/$root/interleave_granularity >$d/$r/interleave_granularity
echo $((8 << 28)) >$d/$r/size
echo "$r" >$s/region

echo "$r on $root, $(cat $d/$r/interleave_ways) ways of $(cat $d/$r/interleave_granularity) bytes, size $(cat $d/$r/size)"
for p in 0 1 2 3 4 5 6 7; do
    m=$(cat $s/mem$p)
    echo "position $p: $(grep " $m\$" $s/bridge$((p % 2)) | cut -d' ' -f1) $m $(cat $s/pos$p)"
done
