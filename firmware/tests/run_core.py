"""Run core_cases.py under the MicroPython unix port; one line per test, exit 1 on failure."""

import sys

import core_cases


def main():
    failed = 0
    passed = 0
    for name in sorted(dir(core_cases)):
        if not name.startswith("test_"):
            continue
        try:
            getattr(core_cases, name)()
            passed += 1
            print("ok", name)
        except Exception as exc:
            failed += 1
            print("FAIL", name, repr(exc))
            sys.print_exception(exc)
    print("passed %d failed %d" % (passed, failed))
    return 1 if failed else 0


sys.exit(main())
