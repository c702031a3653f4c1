"""Check lines as the Python test scripts print them (stdlib only).

One line a check, "ok - WHAT" or "not ok - WHAT: DETAIL", and a last line
"N passed, M failed", which CI reads as the run's count.
"""

results = {"passed": 0, "failed": 0}


def report(ok, what, detail=""):
    """Counts and prints one check; `detail` is shown only when it failed. Returns ok."""
    results["passed" if ok else "failed"] += 1
    print("%s - %s%s" % ("ok" if ok else "not ok", what,
                         (": " + detail) if detail and not ok else ""), flush=True)
    return ok


def summary():
    """Prints the last line and returns the exit status: 1 when any check failed."""
    print("%d passed, %d failed" % (results["passed"], results["failed"]))
    return 1 if results["failed"] else 0
