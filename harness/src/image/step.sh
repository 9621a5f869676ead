#!/bin/sh
# Runs one harness step between two kernel-log markers, so that every kernel
# record between them belongs to this step.  Usage: step N COMMAND [ARG...]
n=$1
shift
echo "ndharness: step $n begin" >/dev/kmsg
"$@"
rc=$?
echo "ndharness: step $n end" >/dev/kmsg
exit $rc
