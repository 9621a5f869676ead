#!/usr/bin/env python3
"""Print the namespace labels of label-area (LSA) files as Linux reads them.

    lsa-dump.py cxl0.lsa [cxl1.lsa ...]

For each file: both index blocks (valid or not, sequence number), which one
is current (UEFI 2.7 13.19 / drivers/nvdimm/label.c: the successor in the
1-2-3 cycle wins), and every slot that holds a label: in use or free in the
current index, uuid, flags (UPDATING = 0x8), nlabel, position, dpa, rawsize.
Handles the EFI v1.1 (128-byte) and v1.2 (256-byte) layouts, which is what
Linux writes on CXL memdevs too (ndd->cxl is never set up to 7.3).
"""
import struct
import sys
import uuid

INDEX_SIG = b"NAMESPACE_INDEX\0"
FLAG_UPDATING = 0x8


def fletcher64(data):
    lo = hi = 0
    for (word,) in struct.iter_unpack("<I", data):
        lo = (lo + word) & 0xFFFFFFFF
        hi = (hi + lo) & 0xFFFFFFFF
    return hi << 32 | lo


def read_index(area, off):
    (seq,) = struct.unpack_from("<I", area, off + 20)
    myoff, mysize, otheroff, labeloff = struct.unpack_from("<QQQQ", area, off + 24)
    nslot, major, minor = struct.unpack_from("<IHH", area, off + 56)
    (checksum,) = struct.unpack_from("<Q", area, off + 64)
    valid = area[off:off + 16] == INDEX_SIG and 0 < mysize <= 4096 and myoff == off
    if valid:
        block = bytearray(area[off:off + mysize])
        block[64:72] = bytes(8)
        valid = fletcher64(bytes(block)) == checksum and seq & 3 != 0
    return {
        "off": off, "valid": valid, "seq": seq & 3, "mysize": mysize,
        "otheroff": otheroff, "labeloff": labeloff, "nslot": nslot,
        "version": (major, minor), "free": area[off + 72:off + 72 + (nslot + 7) // 8],
    }


def current(a, b):
    if not a["valid"]:
        return b if b["valid"] else None
    if not b["valid"]:
        return a
    successor = {1: 2, 2: 3, 3: 1}
    if a["seq"] == b["seq"]:
        return b
    return b if successor[a["seq"]] == b["seq"] else a


def dump(path):
    area = open(path, "rb").read()
    first = read_index(area, 0)
    size = first["mysize"] if first["valid"] else 256
    second = read_index(area, size)
    print(path)
    for idx in (first, second):
        print("  index @%#x: %s seq %d v%d.%d nslot %d" % (
            idx["off"], "valid" if idx["valid"] else "INVALID", idx["seq"],
            idx["version"][0], idx["version"][1], idx["nslot"]))
    cur = current(first, second)
    if cur is None:
        print("  no valid index: every slot is free")
        return
    print("  current index @%#x (seq %d)" % (cur["off"], cur["seq"]))
    labelsize = 128 if cur["version"] == (1, 1) else 256
    for slot in range(cur["nslot"]):
        off = cur["labeloff"] + slot * labelsize
        label = area[off:off + labelsize]
        free = cur["free"][slot // 8] >> (slot % 8) & 1
        if free and not any(label):
            continue
        flags, nlabel, position = struct.unpack_from("<IHH", label, 80)
        lbasize, dpa, rawsize = struct.unpack_from("<QQQ", label, 96)
        print("  slot %d %s: uuid %s flags %#x%s nlabel %d position %d dpa %#x rawsize %#x lbasize %d" % (
            slot, "free (stale bytes)" if free else "IN USE", uuid.UUID(bytes=label[:16]),
            flags, " UPDATING" if flags & FLAG_UPDATING else "", nlabel, position,
            dpa, rawsize, lbasize))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for arg in sys.argv[1:]:
        dump(arg)
