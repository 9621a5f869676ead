#!/bin/sh
# Stands in for util-linux's uuidgen (uuid-runtime would bring systemd into
# the image): a random (version 4) UUID from the kernel, as `uuidgen -r`.
cat /proc/sys/kernel/random/uuid
