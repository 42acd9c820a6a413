#!/usr/bin/env python3
"""The functions a run executed, in link order, as a symbol ordering file for
LLD (`--symbol-ordering-file`): linked first, they share a few hundred
kilobytes of pages instead of being spread over the whole text (BENCHMARKS.md
§11: the kernel maps code 64 KB around each page touched, so scattered hot
code makes nearly the whole binary resident).

    # 1. a release link with a map (cargo rustc passes the flag to the final link only)
    cargo rustc --release --bin itsm-bridge -- -C link-arg=-Wl,-Map=/tmp/bridge.map
    cp target/release/itsm-bridge /tmp/bridge
    # 2. the webhook's events under callgrind (instruction addresses)
    WRAP="valgrind --tool=callgrind --dump-instr=yes --callgrind-out-file=/tmp/cg.out" \\
        python3 scripts/floor_compare.py --floor FLOOR --ours b=/tmp/bridge --alerts 60 --rounds 1
    # 3. the ordering file, and the ordered link
    python3 scripts/hot_order.py /tmp/cg.out /tmp/bridge.map /tmp/bridge /tmp/hot.txt
    cargo rustc --release --bin itsm-bridge -- \\
        -C link-arg=-Wl,--symbol-ordering-file=/tmp/hot.txt -C link-arg=-Wl,--no-warn-symbol-ordering

The names carry the crates' disambiguators, which depend on the build (target,
features, dependency versions): a file made from one build orders only the
functions it still names in another, and LLD ignores the rest.
"""

import bisect
import re
import sys

SECTION = re.compile(r"^\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)\s+\d+\s+\S.*:\((\.text\.[^)]+)\)$")
NAMED = re.compile(r"^c?ob=\((\d+)\)(?: (.*))?")


def text_sections(map_file):
    """(address, size, symbol) of every function section in an LLD map."""
    out = []
    with open(map_file) as f:
        for line in f:
            m = SECTION.match(line)
            if m and int(m.group(2), 16):
                out.append((int(m.group(1), 16), int(m.group(2), 16), m.group(3)[len(".text."):]))
    return sorted(out)


def executed(callgrind_out, binary):
    """Instruction addresses callgrind saw executed in `binary` (it writes
    them relative to the object, as `--dump-instr=yes` positions)."""
    names, current, last, addresses = {}, None, 0, set()
    with open(callgrind_out, errors="replace") as f:
        for line in f:
            m = NAMED.match(line)
            if m:
                if m.group(2):
                    names[m.group(1)] = m.group(2).strip()
                if line.startswith("ob="):
                    current = names.get(m.group(1))
                continue
            if re.match(r"^[a-z]+=", line) or not line.strip():
                continue
            pos = line.split()[0]
            if pos.startswith("0x"):
                last = int(pos, 16)
            elif pos[0] in "+-" and pos[1:].isdigit():
                last += int(pos)
            elif pos != "*":
                continue
            if current == binary:
                addresses.add(last)
    return addresses


def main():
    if len(sys.argv) != 5:
        sys.exit("usage: hot_order.py CALLGRIND_OUT LINK_MAP BINARY ORDER_FILE")
    callgrind_out, map_file, binary, order_file = sys.argv[1:]
    sections = text_sections(map_file)
    if not sections:
        sys.exit(f"{map_file}: no function sections (an LLD map, -Wl,-Map=...?)")
    starts = [s[0] for s in sections]
    hot = {}
    for a in executed(callgrind_out, binary):
        i = bisect.bisect_right(starts, a) - 1
        if i >= 0 and sections[i][0] <= a < sections[i][0] + sections[i][1]:
            hot[i] = sections[i]
    if not hot:
        sys.exit(f"{callgrind_out}: nothing executed in {binary} (the path as callgrind names it)")
    with open(order_file, "w") as f:
        f.write("".join(hot[i][2] + "\n" for i in sorted(hot)))
    print(f"{len(hot)} of {len(sections)} functions executed, "
          f"{sum(s[1] for s in hot.values()) / 1024:.0f} KB of "
          f"{sum(s[1] for s in sections) / 1024:.0f} KB: {order_file}")


if __name__ == "__main__":
    main()
