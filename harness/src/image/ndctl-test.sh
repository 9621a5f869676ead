#!/bin/bash
# Runs one of ndctl's own tests as its test/meson.build does: the same
# environment (NDCTL, DAXCTL, CXL, TEST_PATH, DATA_PATH), the guest's
# packaged tools (the version the tests were built from), the build folder
# as working folder. The program is a test binary or a script of test/.
# Exit status is the test's: 0 pass, 77 skip, anything else fail.
set -u
prog=$1
base=/usr/lib/ndctl-tests
export NDCTL=/usr/bin/ndctl DAXCTL=/usr/bin/daxctl CXL=/usr/bin/cxl
export TEST_PATH=$base/build/test DATA_PATH=$base/test
# No udev runs in the guest: device-mapper makes its /dev/mapper nodes itself.
export DM_DISABLE_UDEV=1
cd "$base/build"
if [ -x "$TEST_PATH/$prog" ]; then
    exec "$TEST_PATH/$prog"
fi
exec "$DATA_PATH/$prog"
