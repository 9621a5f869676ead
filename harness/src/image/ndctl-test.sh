#!/bin/bash
# Runs one of ndctl's own tests as its test/meson.build does: the same
# environment (NDCTL, DAXCTL, CXL, TEST_PATH, DATA_PATH), the guest's
# packaged tools (the version the tests were built from), a working folder
# on a disk filesystem as meson's build folder is. The program is a test
# binary or a script of test/.
# Exit status is the test's: 0 pass, 77 skip, anything else fail.
set -u
prog=$1
base=/usr/lib/ndctl-tests
export NDCTL=/usr/bin/ndctl DAXCTL=/usr/bin/daxctl CXL=/usr/bin/cxl
export TEST_PATH=$base/build/test DATA_PATH=$base/test
# No udev runs in the guest: device-mapper makes its /dev/mapper nodes itself.
export DM_DISABLE_UDEV=1
# The tests make files and mount points in the working folder, some opened
# O_DIRECT; the initramfs is tmpfs, which takes O_DIRECT only from 6.6 on.
# So: ext4 on a RAM disk (brd, 512 MiB, its pages taken as they are
# written; btt-check.sh writes two copies of a namespace there), as a build
# folder on a disk would be.
work=/run/ndctl-tests-work
if ! mountpoint -q "$work"; then
    mkdir -p "$work"
    { modprobe brd rd_nr=1 rd_size=524288 && mkfs.ext4 -q /dev/ram0 &&
        mount /dev/ram0 "$work"; } ||
        echo "ndctl-tests: no ext4 working folder; tmpfs it is" >&2
fi
cd "$work"
if [ -x "$TEST_PATH/$prog" ]; then
    exec "$TEST_PATH/$prog"
fi
# ndctl's CXL scripts ship without the executable bit (meson runs them
# through their interpreter): so does this.
case "$prog" in
*.sh) exec bash "$DATA_PATH/$prog" ;;
esac
exec "$DATA_PATH/$prog"
