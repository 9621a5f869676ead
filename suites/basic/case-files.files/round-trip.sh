#!/bin/sh
# Brought by the case (suites/basic/case-files.files/, at /case in the
# guest): writes 1 MiB of a known pattern through block device $1, reads it
# back and compares.
set -e
dev=$1
yes ndharness | head -c 1048576 >/tmp/pattern
dd if=/tmp/pattern of="$dev" bs=1M count=1 conv=fsync 2>/dev/null
dd if="$dev" of=/tmp/back bs=1M count=1 2>/dev/null
cmp /tmp/pattern /tmp/back
echo "$dev: 1 MiB written and read back the same"
