#!/bin/sh
# Runs one harness step between two kernel-log markers, so that every kernel
# record between them belongs to this step.  Usage: step N COMMAND [ARG...]
#
# step --then LINE --mark MARK N COMMAND [ARG...] also runs the shell line
# LINE once COMMAND has ended (what the harness reads after a step, in the
# same guest call): its stdout follows COMMAND's, after a newline and a
# line MARK (the harness makes it unique). Shell builtins only: under TCG
# a process costs milliseconds.
then=
mark=
while :; do
    case "$1" in
    --then) then=$2 && shift 2 ;;
    --mark) mark=$2 && shift 2 ;;
    *) break ;;
    esac
done
n=$1
shift
echo "ndharness: step $n begin" >/dev/kmsg
"$@"
rc=$?
echo "ndharness: step $n end" >/dev/kmsg
if [ -n "$mark" ]; then
    printf '\n%s\n' "$mark"
    (eval "$then") 2>/dev/null
fi
exit $rc
