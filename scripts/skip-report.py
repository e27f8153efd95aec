#!/usr/bin/env python3
"""How many test cases were skipped, and why: reads the GoogleTest XML reports that the ctest
entries write (GTEST_OUTPUT, set in tests/CMakeLists.txt) and prints one line per reason.

  skip-report.py <folder of *.xml> [title]

A skip is never silent: ctest shows a sharded gtest program as one "Passed" entry, so the
cases it skipped (every CUDA case on a machine without a GPU, the LibTorch cross-checks
without LibTorch) are counted here, grouped by their first message line.
"""
import collections
import glob
import os
import sys
import xml.etree.ElementTree as ET


def main():
    folder = sys.argv[1]
    title = sys.argv[2] if len(sys.argv) > 2 else folder
    files = sorted(glob.glob(os.path.join(folder, "*.xml")))
    if not files:
        print(f"{title}: no test reports in {folder}")
        return 1
    ran = skipped = 0
    reasons = collections.Counter()
    for f in files:
        for case in ET.parse(f).getroot().iter("testcase"):
            if case.get("result") == "suppressed" or case.get("status") == "notrun":
                continue  # filtered out or DISABLED_: not part of this run
            ran += 1
            skip = case.find("skipped")
            if skip is None:
                continue
            skipped += 1
            msg = (skip.get("message") or skip.text or "").strip()
            # gtest prefixes the location ("tests/foo.cpp:12\n"); keep the reason itself
            lines = [l.strip() for l in msg.splitlines() if l.strip()]
            lines = [l for l in lines if not (l.endswith(tuple("0123456789")) and ".cpp:" in l)]
            # the reason, without what follows its first ": " (the row's op, an exception's text)
            reasons[lines[0].split(": ")[0] if lines else "(no reason given)"] += 1
    print(f"{title}: {ran} cases, {ran - skipped} run, {skipped} skipped")
    for reason, n in reasons.most_common():
        print(f"  {n:6d}  {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
