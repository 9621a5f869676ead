#!/bin/sh
# Stands in for `journalctl -k` in ndharness guests, which have no journal:
# ndctl's tests read the kernel log with `journalctl [-r] -k [--since T]`.
# Prints the whole kernel ring buffer (--since is not honoured: the guest
# lives for one test), newest first with -r.
reverse=
for a in "$@"; do
    case "$a" in -r | --reverse) reverse=1 ;; esac
done
if [ -n "$reverse" ]; then dmesg | tac; else dmesg; fi
