#!/usr/bin/env python3
"""The functions runs executed, as a linker script that links them first
(`infra/hot-text.ld`, which `build.rs` hands to LLD for release builds of the
Lambda binary): together they share a few hundred kilobytes of pages instead
of being spread over the whole text (BENCHMARKS.md §11: the kernel maps code
64 KB around each page touched, so scattered hot code makes nearly the whole
binary resident).

    # 1. a release link with a map, unstripped (cargo rustc passes these to the final link only)
    cargo rustc --release --bin itsm-bridge -- -C link-arg=-Wl,-Map=/tmp/bridge.map -C strip=none
    cp target/release/itsm-bridge /tmp/bridge
    # 2. the webhook's events under callgrind, as deployed (DynamoDB: moto's server) and locally
    .moto-venv/bin/moto_server -p 5077 &
    for store in "--dynamodb http://127.0.0.1:5077" ""; do
      WRAP="valgrind --tool=callgrind --dump-instr=yes --callgrind-out-file=/tmp/cg-$RANDOM.out" \\
        python3 scripts/floor_compare.py --floor FLOOR --ours b=/tmp/bridge --alerts 60 --rounds 1 $store
    done
    # 3. the script
    python3 scripts/hot_order.py /tmp/bridge.map /tmp/bridge infra/hot-text.ld /tmp/cg-*.out

The patterns name functions without the crates' disambiguators and the legacy
mangling's hash (a wildcard stands for them), so one script serves every
target and build: a function renamed since is simply not moved, and LLD links
the rest as it would have.
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


def pattern(section):
    """A glob for the function in any build: legacy names end in the hash
    `17h<16 hex>E`; v0 names carry crate disambiguators `Cs<base62>_` and
    back-references `B<base62>_` whose offsets move with them."""
    section = re.sub(r"17h[0-9a-f]{16}E$", "17h*E", section)
    if section.split(".")[-1].startswith("_R"):
        section = re.sub(r"(Cs|B)[0-9A-Za-z]*_", r"\1*_", section)
    return section


def map_sections(map_file):
    sections = text_sections(map_file)
    if not sections:
        sys.exit(f"{map_file}: no function sections (an LLD map, -Wl,-Map=...?)")
    return sections


def main():
    if len(sys.argv) < 5:
        sys.exit("usage: hot_order.py LINK_MAP BINARY LINKER_SCRIPT CALLGRIND_OUT...")
    map_file, binary, script = sys.argv[1:4]
    sections = map_sections(map_file)
    starts = [s[0] for s in sections]
    hot = {}
    for callgrind_out in sys.argv[4:]:
        seen = executed(callgrind_out, binary)
        if not seen:
            sys.exit(f"{callgrind_out}: nothing executed in {binary} (the path as callgrind names it)")
        for a in seen:
            i = bisect.bisect_right(starts, a) - 1
            if i >= 0 and sections[i][0] <= a < sections[i][0] + sections[i][1]:
                hot[i] = sections[i]
    patterns = list(dict.fromkeys(pattern(hot[i][2]) for i in sorted(hot)))
    with open(script, "w") as f:
        f.write("/* The functions the webhook runs, linked first: scripts/hot_order.py made this\n"
                "   from callgrind runs; build.rs passes it to LLD. BENCHMARKS.md section 11. */\n"
                "OVERWRITE_SECTIONS {\n  .text : {\n")
        f.write("".join(f"    *(.text.{p})\n" for p in patterns))
        f.write("    *(.text .text.*)\n  }\n}\n")
    print(f"{len(hot)} of {len(sections)} functions executed, "
          f"{sum(s[1] for s in hot.values()) / 1024:.0f} KB of "
          f"{sum(s[1] for s in sections) / 1024:.0f} KB; {len(patterns)} patterns: {script}")


if __name__ == "__main__":
    main()
