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
functions it still names in another, and LLD ignores the rest. So the run also
writes ORDER_FILE.names, the same functions demangled without disambiguators,
and another build's map turns those back into its own symbols:

    cargo rustc --release --bin itsm-bridge [--target T] -- -C link-arg=-Wl,-Map=/tmp/other.map
    python3 scripts/hot_order.py --from-names /tmp/hot.txt.names /tmp/other.map /tmp/hot-other.txt
    cargo rustc --release --bin itsm-bridge [--target T] -- -C link-arg=-Wl,--symbol-ordering-file=...
"""

import bisect
import re
import subprocess
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


def plain_names(symbols):
    """Demangled (binutils' c++filt), without the crates' disambiguators or
    the legacy mangling's hash: the same for the same function in any build
    (the generic instances of a legacy-mangled function share one name)."""
    out = subprocess.run(["c++filt"], input="\n".join(symbols), capture_output=True,
                         text=True, check=True).stdout.splitlines()
    # v0 names carry `[hash]` after each crate; legacy ones a `::h<hash>` tail.
    return [re.sub(r"::h[0-9a-f]{16}$", "", re.sub(r"\[[0-9a-f]+\]", "", n)) for n in out]


def from_names(names_file, map_file, order_file):
    with open(names_file) as f:
        wanted = set(f.read().splitlines())
    symbols = [s for _, _, s in map_sections(map_file)]
    picked = [s for s, n in zip(symbols, plain_names(symbols)) if n in wanted]
    with open(order_file, "w") as f:
        f.write("".join(s + "\n" for s in picked))
    print(f"{len(picked)} of {len(symbols)} functions named in {names_file}: {order_file}")


def map_sections(map_file):
    sections = text_sections(map_file)
    if not sections:
        sys.exit(f"{map_file}: no function sections (an LLD map, -Wl,-Map=...?)")
    return sections


def main():
    if len(sys.argv) == 5 and sys.argv[1] == "--from-names":
        return from_names(*sys.argv[2:])
    if len(sys.argv) != 5:
        sys.exit("usage: hot_order.py CALLGRIND_OUT LINK_MAP BINARY ORDER_FILE\n"
                 "       hot_order.py --from-names NAMES_FILE LINK_MAP ORDER_FILE")
    callgrind_out, map_file, binary, order_file = sys.argv[1:]
    sections = map_sections(map_file)
    starts = [s[0] for s in sections]
    hot = {}
    for a in executed(callgrind_out, binary):
        i = bisect.bisect_right(starts, a) - 1
        if i >= 0 and sections[i][0] <= a < sections[i][0] + sections[i][1]:
            hot[i] = sections[i]
    if not hot:
        sys.exit(f"{callgrind_out}: nothing executed in {binary} (the path as callgrind names it)")
    symbols = [hot[i][2] for i in sorted(hot)]
    with open(order_file, "w") as f:
        f.write("".join(s + "\n" for s in symbols))
    with open(order_file + ".names", "w") as f:
        f.write("".join(n + "\n" for n in plain_names(symbols)))
    print(f"{len(hot)} of {len(sections)} functions executed, "
          f"{sum(s[1] for s in hot.values()) / 1024:.0f} KB of "
          f"{sum(s[1] for s in sections) / 1024:.0f} KB: {order_file}")


if __name__ == "__main__":
    main()
