#!/usr/bin/env python3
"""Turns bench/run's data.tsv into results.md and results.png (gnuplot).

Every figure comes from the same run; a spry figure is quoted as a ratio to
the raw libuv echo's: the median of the per-round ratios (each round runs
both back to back, the order alternating), with the range over rounds.
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
from collections import defaultdict

# ---------------------------------------------------------------- data


def parse(path):
    rows = []
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 4 or not parts[3].startswith("RESULT"):
                continue
            kv = {}
            for tok in parts[3].split()[1:]:
                if "=" in tok:
                    k, v = tok.split("=", 1)
                    kv[k] = v
            rows.append({"scenario": parts[0], "server": parts[1], "round": parts[2], "kv": kv})
    return rows


def num(v, default=None):
    try:
        return float(v)
    except (TypeError, ValueError):
        return default


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, digits=0, unit=""):
    if v is None:
        return "n/a"
    if digits == 0:
        s = f"{v:,.0f}"
    else:
        s = f"{v:,.{digits}f}"
    return s + unit


def fmt_ratio(v):
    return "n/a" if v is None else f"{v:.2f}x"


def measured(t):
    """A target whose section ran (bench/run --skip / --only leave some out)."""
    return not (t[1].startswith("n/a") and t[6] is None)


class Data:
    def __init__(self, rows):
        self.rows = rows
        self.by = defaultdict(list)  # (scenario, server) -> rows
        for r in rows:
            self.by[(r["scenario"], r["server"])].append(r)

    def values(self, scenario, server, key):
        return [num(r["kv"].get(key)) for r in self.by[(scenario, server)]]

    def per_round(self, scenario, server, key):
        return {r["round"]: num(r["kv"].get(key)) for r in self.by[(scenario, server)]}

    def median(self, scenario, server, key):
        return med(self.values(scenario, server, key))

    def ratio(self, num_key, num_scen, den_key, den_scen, num_srv="spry", den_srv="raw"):
        """Median and range of per-round ratios num/den."""
        a = self.per_round(num_scen, num_srv, num_key)
        b = self.per_round(den_scen, den_srv, den_key)
        rs = [a[k] / b[k] for k in a if k in b and a[k] is not None and b[k]]
        if not rs:
            return None, None, None
        return statistics.median(rs), min(rs), max(rs)

    def one(self, scenario, server, rnd=None):
        for r in self.by[(scenario, server)]:
            if rnd is None or r["round"] == rnd:
                return r["kv"]
        return None

    def errors(self):
        bad = []
        for r in self.rows:
            kv = r["kv"]
            if kv.get("mode") == "exit":
                if kv.get("rc") != "0":
                    bad.append(f"{kv.get('server')} exited with status {kv.get('rc')} on SIGINT")
                continue
            if kv.get("errors", "0") not in ("0", "") or kv.get("rc", "0") != "0" or kv.get("timed_out") == "1":
                bad.append(f"{r['scenario']} / {r['server']} round {r['round']}: errors={kv.get('errors')} rc={kv.get('rc')} timed_out={kv.get('timed_out')}")
        return bad


# ---------------------------------------------------------------- difference method


def per_message(d, scen, srv, key, count_key):
    small = d.one(scen, srv, "small")
    large = d.one(scen, srv, "large")
    if not small or not large:
        return None
    dn = num(large.get(count_key), 0) - num(small.get(count_key), 0)
    if dn <= 0:
        return None
    return (num(large.get(key), 0) - num(small.get(key), 0)) / dn


def syscalls_per_message(d, srv):
    small = d.one("strace_paced", srv, "small")
    large = d.one("strace_paced", srv, "large")
    if not small or not large:
        return None, {}
    dn = num(large["messages"]) - num(small["messages"])
    out = {}
    for k in large:
        if k in ("mode", "size", "messages"):
            continue
        out[k] = (num(large.get(k), 0) - num(small.get(k), 0)) / dn
    return out.get("total"), out


def short_function(name):
    # Drop argument lists and templates' noise for a readable table.
    name = name.strip()
    depth = 0
    out = []
    for ch in name:
        if ch == "(":
            if depth == 0:
                out.append("()")
            depth += 1
        elif ch == ")":
            depth -= 1
        elif depth == 0:
            out.append(ch)
    s = "".join(out)
    s = s.replace("std::__cxx11::", "std::").replace("std::basic_string<char, std::char_traits<char>, std::allocator<char> >", "std::string")
    if len(s) > 90:
        s = s[:87] + "..."
    return s


def load_functions(path):
    funcs = {}
    if not os.path.exists(path):
        return funcs
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 2:
                continue
            key = (parts[1], parts[2] if len(parts) > 2 else "")
            funcs[key] = funcs.get(key, 0) + int(parts[0])
    return funcs


def function_diff(profiles, cfg, srv, messages):
    small = load_functions(os.path.join(profiles, f".cg.{cfg}.{srv}.small.tsv"))
    large = load_functions(os.path.join(profiles, f".cg.{cfg}.{srv}.large.tsv"))
    if not small or not large or not messages:
        return [], {}
    diff = {}
    for k in set(small) | set(large):
        diff[k] = (large.get(k, 0) - small.get(k, 0)) / messages
    by_obj = defaultdict(float)
    for (fn, obj), v in diff.items():
        by_obj[os.path.basename(obj) or "?"] += v
    top = sorted(diff.items(), key=lambda kv: -kv[1])
    return top, dict(by_obj)


def massif_summary(path, connections):
    """Heap bytes per connection by allocation site, at the largest snapshot."""
    if not os.path.exists(path):
        return None
    text = open(path).read()
    best = None
    for snap in text.split("snapshot=")[1:]:
        if "heap_tree=detailed" not in snap and "heap_tree=peak" not in snap:
            continue
        heap = int(re.search(r"mem_heap_B=(\d+)", snap).group(1))
        extra = int(re.search(r"mem_heap_extra_B=(\d+)", snap).group(1))
        if best is None or heap + extra > best[0]:
            best = (heap + extra, heap, extra, snap)
    if not best:
        return None
    sites = []
    for line in best[3].split("\n"):
        m = re.match(r"^ n\d+: (\d+) (?:0x[0-9A-F]+: )?(.*)$", line)
        if m:
            sites.append((int(m.group(1)), m.group(2)))
    return best[1], best[2], sites


# ---------------------------------------------------------------- report


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--command", default="bench/run")
    ap.add_argument("--mode", default="full")
    args = ap.parse_args()
    d = Data(parse(args.data))
    profiles = os.path.join(args.out, "profiles")
    meta = d.one("meta", "run", "0") or {}
    meta_end = d.one("meta", "run", "1") or {}
    md = []
    w = md.append

    # ---- figures
    thr = {}
    for scen in ("echo_d1", "echo_d16", "echo_bin4k_d16", "open50k"):
        thr[scen] = {
            srv: {
                "rate": d.median(scen, srv, "msgs_per_s"),
                "rate_min": min([v for v in d.values(scen, srv, "msgs_per_s") if v is not None], default=None),
                "rate_max": max([v for v in d.values(scen, srv, "msgs_per_s") if v is not None], default=None),
                "p50": d.median(scen, srv, "p50_us"),
                "p99": d.median(scen, srv, "p99_us"),
                "p999": d.median(scen, srv, "p999_us"),
                "cpu": d.median(scen, srv, "server_cpu_us_per_msg"),
                "util": d.median(scen, srv, "server_cpu_util"),
                "late": d.median(scen, srv, "late_sends"),
            }
            for srv in ("raw", "spry")
        }
    r_d1 = d.ratio("msgs_per_s", "echo_d1", "msgs_per_s", "echo_d1")
    r_d16 = d.ratio("msgs_per_s", "echo_d16", "msgs_per_s", "echo_d16")
    r_bin = d.ratio("msgs_per_s", "echo_bin4k_d16", "msgs_per_s", "echo_bin4k_d16")
    r_cpu50 = d.ratio("server_cpu_us_per_msg", "open50k", "server_cpu_us_per_msg", "open50k")
    r_cpu_d1 = d.ratio("server_cpu_us_per_msg", "echo_d1", "server_cpu_us_per_msg", "echo_d1")
    r_cpu_d16 = d.ratio("server_cpu_us_per_msg", "echo_d16", "server_cpu_us_per_msg", "echo_d16")
    fan_rate = d.median("fanout", "spry", "deliveries_per_s")
    fan_cpu = d.median("fanout", "spry", "server_cpu_us_per_msg")
    r_fan = d.ratio("deliveries_per_s", "fanout", "msgs_per_s", "echo_d16")
    r_fan_cpu = d.ratio("server_cpu_us_per_msg", "fanout", "server_cpu_us_per_msg", "echo_d16")

    cg = {}
    for cfg in ("d1", "d16", "paced", "bin4k"):
        for srv in ("raw", "spry"):
            cg[(cfg, srv)] = per_message(d, f"callgrind_{cfg}", srv, "instructions", "messages")
    sc_total = {}
    sc_detail = {}
    for srv in ("raw", "spry"):
        sc_total[srv], sc_detail[srv] = syscalls_per_message(d, srv)
    idle = {srv: num((d.one("idle", srv) or {}).get("rss_per_conn_bytes")) for srv in ("raw", "spry")}
    idle_conns = (d.one("idle", "spry") or {}).get("connections")

    # HTTP under callgrind (examples/hello): per request, by difference.
    http_cfgs = (("bare_d16", "bare GET, 16 pipelined per write"), ("browser_d16", "browser GET (10 fields), 16 pipelined per write"),
                 ("bare_d1", "bare GET, no pipelining"))
    hcg = {}
    for cfg, _ in http_cfgs:
        scen = f"callgrind_http_{cfg}"
        total = per_message(d, scen, "spry", "instructions", "requests")
        incl = per_message(d, scen, "spry", "llhttp_execute_incl", "requests")
        own = per_message(d, scen, "spry", "llhttp_self", "requests")
        hcg[cfg] = {"total": total, "llhttp": incl, "llhttp_self": own,
                    "outside": (total - incl) if total is not None and incl is not None else None}

    # TLS: the same echo binary over wss and over plain ws, same rounds.
    tls = {}
    for scen in ("tls_echo_d1", "tls_echo_d16"):
        tls[scen] = {
            srv: {
                "rate": d.median(scen, srv, "msgs_per_s"),
                "rate_min": min([v for v in d.values(scen, srv, "msgs_per_s") if v is not None], default=None),
                "rate_max": max([v for v in d.values(scen, srv, "msgs_per_s") if v is not None], default=None),
                "p50": d.median(scen, srv, "p50_us"),
                "p99": d.median(scen, srv, "p99_us"),
                "cpu": d.median(scen, srv, "server_cpu_us_per_msg"),
                "util": d.median(scen, srv, "server_cpu_util"),
                "client": d.median(scen, srv, "client_cpu_util"),
            }
            for srv in ("ws", "wss")
        }
    r_tls = {scen: d.ratio("msgs_per_s", scen, "msgs_per_s", scen, num_srv="wss", den_srv="ws") for scen in tls}
    r_tls_cpu = {scen: d.ratio("server_cpu_us_per_msg", scen, "server_cpu_us_per_msg", scen, num_srv="wss", den_srv="ws") for scen in tls}
    tls_idle = {srv: num((d.one("tls_idle", srv) or {}).get("rss_per_conn_bytes")) for srv in ("ws", "wss")}
    # Paced wss under a handshake flood: p99 against the same paced load alone.
    flood = {k: {"p99": d.median(f"tls_paced_{k}", "wss", "p99_us"), "p50": d.median(f"tls_paced_{k}", "wss", "p50_us"),
                 "rate": d.median(f"tls_paced_{k}", "wss", "msgs_per_s"), "util": d.median(f"tls_paced_{k}", "wss", "server_cpu_util")}
             for k in ("quiet", "flood")}
    flood_hs = d.median("tls_flood_handshakes", "wss", "hs_per_s")
    tls_idle_conns = (d.one("tls_idle", "wss") or {}).get("connections")

    def cgratio(cfg):
        a, b = cg.get((cfg, "spry")), cg.get((cfg, "raw"))
        return a / b if a and b else None

    # ---- targets: (name, spry value text, raw value text, ratio, goal text, pass?, score)
    # score: value measured against the goal, >= 1 meets it (for the chart).
    targets = []

    def target(name, value_txt, raw_txt, ratio, goal_txt, ok, score, note=""):
        targets.append((name, value_txt, raw_txt, ratio, goal_txt, ok, score, note))

    def ge(v, goal):
        return (v is not None and v >= goal), (v / goal if v is not None else None)

    def le(v, goal):
        return (v is not None and v <= goal), (goal / v if v else None)

    ok, sc = ge(r_d1[0], 0.9)
    target("Echo throughput, depth 1 (msgs/s)", fmt(thr["echo_d1"]["spry"]["rate"]), fmt(thr["echo_d1"]["raw"]["rate"]), r_d1, ">= 0.9x raw", ok, sc)
    ok, sc = ge(r_d16[0], 0.8)
    target("Echo throughput, depth 16 (msgs/s)", fmt(thr["echo_d16"]["spry"]["rate"]), fmt(thr["echo_d16"]["raw"]["rate"]), r_d16, ">= 0.8x raw", ok, sc)
    ok, sc = le(r_cpu50[0], 1.2)
    target("Server CPU per message at 50k msgs/s offered (us)", fmt(thr["open50k"]["spry"]["cpu"], 2), fmt(thr["open50k"]["raw"]["cpu"], 2), r_cpu50, "<= 1.2x raw", ok, sc)
    for cfg, goal, label in (("d1", 1000, "depth 1"), ("d16", 500, "depth 16"), ("paced", 1400, "paced 2,000/s")):
        v = cg.get((cfg, "spry"))
        ok, sc = le(v, goal)
        target(f"User-space instructions per message, {label} (callgrind)", fmt(v), fmt(cg.get((cfg, "raw"))), (cgratio(cfg), None, None), f"<= {goal:,}", ok, sc)
    sp = sc_detail.get("spry", {})
    ctl = sp.get("epoll_ctl", 0.0)
    v = sc_total.get("spry")
    ok = v is not None and v <= 3.0 and ctl < 0.01
    detail = ", ".join(f"{k} {sp[k]:.2f}" for k in sorted(sp, key=lambda k: -sp[k]) if k != "total" and abs(sp[k]) >= 0.005)
    rv = sc_total.get("raw")
    target("System calls per paced message (strace)", fmt(v, 2) + (f" ({detail})" if detail else ""), fmt(rv, 2), ((v / rv) if v and rv else None, None, None), "<= 3, no epoll_ctl", ok, (3.0 / v if v else None))
    v = idle.get("spry")
    ok, sc = le(v, 1024)
    target(f"Server RSS per idle WebSocket ({idle_conns or '?'} connections, bytes)", fmt(v), fmt(idle.get("raw")), ((v / idle["raw"]) if v and idle.get("raw") else None, None, None), "< 1,024", ok and v < 1024, sc)
    ok, sc = ge(r_fan[0], 1.0)
    target("Fan-out to 1,000 subscribers: deliveries/s vs raw echo msgs/s at depth 16", fmt(fan_rate), fmt(thr["echo_d16"]["raw"]["rate"]), r_fan, ">= 1.0x raw d16", ok, sc)
    # Coroutines (section coroutine): the same echo as a coroutine, against the callback.
    co_cg = {(cfg, srv): per_message(d, f"callgrind_co_{cfg}", srv, "instructions", "messages")
             for cfg in ("d1", "paced") for srv in ("cb", "co")}
    for cfg, label in (("d1", "depth 1"), ("paced", "paced 2,000/s")):
        a, b = co_cg[(cfg, "co")], co_cg[(cfg, "cb")]
        if a is None and b is None:
            continue
        rc = a / b if a and b else None
        ok, sc = le(rc, 1.15)
        target(f"Coroutine echo: instructions per message, {label} (vs the callback echo)", fmt(a), fmt(b) + " (callback)", (rc, None, None), "<= 1.15x callback", ok, (1.15 / rc if rc else None))
    # HTTP (no raw counterpart): examples/hello, its global middleware included.
    v = hcg["bare_d16"]["total"]
    ok, sc = le(v, 3000)
    target("HTTP: user-space instructions per request, bare GET pipelined 16, middleware included (callgrind)", fmt(v), "-", (None, None, None), "<= 3,000", ok, sc)
    v = hcg["browser_d16"]["outside"]
    ok, sc = le(v, 2100)
    target("HTTP: user-space instructions per request outside llhttp_execute, browser GET pipelined 16 (callgrind)", fmt(v), "-", (None, None, None), "<= 2,100", ok, sc)
    # TLS: the baseline column holds spry over plain ws (same binary, same rounds), not raw libuv.
    ok, sc = ge(r_tls["tls_echo_d16"][0], 0.7)
    target("TLS: wss echo throughput, depth 16 (msgs/s; baseline column: spry over plain ws)", fmt(tls["tls_echo_d16"]["wss"]["rate"]),
           fmt(tls["tls_echo_d16"]["ws"]["rate"]), r_tls["tls_echo_d16"], ">= 0.7x ws", ok, sc)
    v = tls_idle.get("wss")
    ok, sc = le(v, 12 * 1024)
    target(f"TLS: server RSS per idle wss connection ({tls_idle_conns or '?'} connections, bytes; baseline column: plain ws)", fmt(v),
           fmt(tls_idle.get("ws")), ((v / tls_idle["ws"]) if v and tls_idle.get("ws") else None, None, None), "<= 12,288 (12 KiB)", ok, sc)

    q, f = flood["quiet"]["p99"], flood["flood"]["p99"]
    if q is not None and f is not None:
        ok, sc = le(f - q, 2000)
        target(f"TLS: p99 latency of 100 wss sockets paced at 10,000 msgs/s during a handshake flood ({fmt(flood_hs)} handshakes/s; baseline column: no flood, us)",
               fmt(f, 1), fmt(q, 1), (f / q if q else None, None, None), "<= baseline + 2,000 us", ok, sc)

    # ---- permessage-deflate: examples/echo --compression off | shared | dedicated, same rounds
    dfl_modes = ("off", "shared", "dedicated")
    dfl_sizes = sorted({int(sc.rsplit("_", 1)[1]) for sc, _ in d.by if sc.startswith("deflate_echo_")})
    dfl_fan = {m: d.median("deflate_fanout", m, "deliveries_per_s") for m in dfl_modes}
    r_dfl_fan = {m: d.ratio("deliveries_per_s", "deflate_fanout", "deliveries_per_s", "deflate_fanout", num_srv=m, den_srv="off")
                 for m in ("shared", "dedicated")}
    dfl_idle = {(m, k): num((d.one("deflate_idle", m, k) or {}).get("rss_per_conn_bytes")) for m in dfl_modes for k in ("handshake", "echoed")}
    dfl_idle_conns = (d.one("deflate_idle", "off", "handshake") or d.one("deflate_idle", "off", "echoed") or {}).get("connections")
    for m, short in (("shared", "deflate fan-out shared"), ("dedicated", "deflate fan-out dedic.")):
        if dfl_fan.get(m) is None and dfl_fan.get("off") is None:
            continue
        ok, sc = ge(r_dfl_fan[m][0], 0.8)
        target(f"Deflate: fan-out of a compressed 300-byte JSON message to 1,000 subscribers, {m} (deliveries/s; baseline column: compression off)",
               fmt(dfl_fan.get(m)), fmt(dfl_fan.get("off")), r_dfl_fan[m], ">= 0.8x off", ok, sc, short)
    for m, k, label, short in (("shared", "handshake", "shared, after the handshake", "idle deflate shared"),
                               ("shared", "echoed", "shared, after one message each", "idle shared +msg"),
                               ("dedicated", "echoed", "dedicated, after one message each and its contexts given back", "idle dedicated +msg")):
        v, base = dfl_idle.get((m, k)), dfl_idle.get(("off", k))
        if v is None and base is None:
            continue
        ok = v is not None and base is not None and v <= base + 64
        sc = (base + 64) / v if v and base is not None and v > 0 else None
        target(f"Deflate: server RSS per idle connection, {label} ({dfl_idle_conns or '?'} connections, bytes; baseline column: compression off)",
               fmt(v) + (f" ({v - base:+,.0f})" if v is not None and base is not None else ""), fmt(base),
               ((v / base) if v and base else None, None, None), "<= off + 64", ok, sc, short)

    # ---- header
    w("# spry benchmark results")
    w("")
    w(f"Reproduce with `{args.command}` from the repository root (writes this file, `results.png`, `data.tsv` and `profiles/`).")
    w("")
    tree = f"commit `{meta.get('commit', '?')}`"
    if meta.get("dirty_files", "0") not in ("0", ""):
        tree += (f" plus uncommitted changes in {meta.get('dirty_files')} files under src/, include/, examples/ "
                 f"(`git diff HEAD -- src include examples | sha1sum`: {meta.get('diff_sha1')})")
    w(f"- Run: {meta.get('run_mode', args.mode)} mode, {meta.get('rounds', '?')} interleaved rounds, {tree}, "
      f"started {meta.get('started', '?')}, finished {meta_end.get('finished', '?')}.")
    w(f"- Machine: {meta.get('nproc', '?')} cores; load average {meta.get('loadavg_start', '?')} at start, {meta_end.get('loadavg_end', '?')} at end "
      "(shared with other work: absolute rates are noisy, the same-round ratios and callgrind counts are the figures to trust).")
    w("- Server (`examples/echo --threads 1`, `uv-raw-echo`, `examples/hello`) pinned to CPU 1, `spry-load` / `wrk` to CPU 0; "
      "100 connections, 32-byte text messages unless stated; raw echo driven with the same bytes (the masked frame) without a handshake.")
    w("")

    # ---- targets
    w("## Targets")
    w("")
    w("| target | spry | raw libuv | spry / raw | goal | result |")
    w("|---|---:|---:|---:|---|---|")
    not_run = [t for t in targets if not measured(t)]
    for name, val, raw, ratio, goal, ok, score, _ in (t for t in targets if measured(t)):
        rtxt = fmt_ratio(ratio[0])
        if ratio[1] is not None and ratio[2] is not None and ratio[1] != ratio[2]:
            rtxt += f" ({ratio[1]:.2f}-{ratio[2]:.2f})"
        res = "**pass**" if ok else "**MISS**"
        if not ok and score:
            res += f" ({score:.2f} of goal)"
        w(f"| {name} | {val} | {raw} | {rtxt} | {goal} | {res} |")
    w("")
    w("Ratios are medians of per-round ratios (range in brackets). \"of goal\": how far the figure reaches, 1.00 meets it."
      + (f" {len(not_run)} targets whose sections did not run are left out." if not_run else ""))
    w("")
    errs = d.errors()
    if errs:
        w("**Errors during the run** (payload verification, unexpected closes, exit status):")
        w("")
        for e in errs:
            w(f"- {e}")
        w("")

    # ---- all measurements
    if any(thr[sc][sv]["rate"] is not None for sc in thr for sv in ("raw", "spry")) or fan_rate is not None:
        w("## Echo and fan-out, all rounds")
        w("")
        w("Medians over rounds; msgs/s with min-max; latency from send (closed loop) or from the scheduled send time (open loop); "
          "server CPU from /proc (all threads, schedstat).")
        w("")
        w("| scenario | server | msgs/s (min-max) | p50 us | p99 us | p99.9 us | server CPU us/msg | server core use |")
        w("|---|---|---:|---:|---:|---:|---:|---:|")
        names = {
            "echo_d1": "echo, depth 1",
            "echo_d16": "echo, depth 16",
            "echo_bin4k_d16": "echo, 4 KiB binary, depth 16",
            "open50k": "echo, open loop 50k msgs/s",
        }
        for scen, label in names.items():
            for srv in ("raw", "spry"):
                t = thr[scen][srv]
                if t["rate"] is None:
                    continue
                rng = f" ({fmt(t['rate_min'])}-{fmt(t['rate_max'])})" if t["rate_min"] != t["rate_max"] else ""
                util = f"{t['util'] * 100:.0f} %" if t["util"] is not None else "n/a"
                w(f"| {label} | {srv} | {fmt(t['rate'])}{rng} | {fmt(t['p50'], 1)} | {fmt(t['p99'], 1)} | {fmt(t['p999'], 1)} | {fmt(t['cpu'], 3)} | {util} |")
        if fan_rate is not None:
            w(f"| fan-out, 1 publisher x 1,000 subscribers, window 16 | spry | {fmt(fan_rate)} deliveries/s "
              f"({fmt(d.median('fanout', 'spry', 'publishes_per_s'))} publishes/s) | {fmt(d.median('fanout', 'spry', 'p50_us'), 1)} | "
              f"{fmt(d.median('fanout', 'spry', 'p99_us'), 1)} | {fmt(d.median('fanout', 'spry', 'p999_us'), 1)} | {fmt(fan_cpu, 3)} per delivery | "
              f"{(d.median('fanout', 'spry', 'server_cpu_util') or 0) * 100:.0f} % |")
        w("")
        w("Same-run ratios (spry / raw): "
          + "; ".join(f"{lbl} {fmt_ratio(r[0])}" for lbl, r in (
              ("throughput d1", r_d1), ("throughput d16", r_d16), ("throughput 4 KiB d16", r_bin),
              ("CPU/msg d1", r_cpu_d1), ("CPU/msg d16", r_cpu_d16), ("CPU/msg at 50k/s", r_cpu50),
              ("fan-out CPU per delivery vs raw d16 CPU per message", r_fan_cpu)) if r[0] is not None) + ".")
        late = [thr["open50k"][s]["late"] for s in ("raw", "spry") if thr["open50k"][s]["late"]]
        if late:
            w("")
            w(f"Open loop: in a median run the client sent up to {fmt(max(late))} of the messages more than 1 ms behind schedule "
              "(machine load); their latency still counts from the scheduled time, and the server then sees some wake-ups carry several messages.")
        w("")

    # ---- http
    if d.by[("http_pipeline1", "spry")]:
        w("## HTTP: wrk against examples/hello (`GET /hello/world`)")
        w("")
        w("| wrk | requests/s (median) | p50 us | p99 us | server CPU us/request |")
        w("|---|---:|---:|---:|---:|")
        for pipe in (1, 16):
            scen = f"http_pipeline{pipe}"
            label = "100 connections, no pipelining" if pipe == 1 else "100 connections, 16 pipelined requests per write (bench/pipeline.lua)"
            w(f"| {label} | {fmt(d.median(scen, 'spry', 'req_per_s'))} | {fmt(d.median(scen, 'spry', 'p50_us'), 1)} | "
              f"{fmt(d.median(scen, 'spry', 'p99_us'), 1)} | {fmt(d.median(scen, 'spry', 'server_cpu_us_per_req'), 2)} |")
        w("")

    # ---- TLS
    hs = {kind: d.by[(f"tls_handshake_{kind}", "wss")] for kind in ("full", "resumed")}
    if any(tls[s][t]["rate"] is not None for s in tls for t in ("ws", "wss")) or any(hs.values()) or any(tls_idle.values()):
        w("## TLS: wss against plain ws (the same examples/echo binary)")
        w("")
        first = next((r["kv"] for r in d.rows if r["kv"].get("tls_protocol") not in (None, "none")), {})
        w(f"Two `examples/echo --threads 1` servers, one plain and one with `--cert`/`--key` (an ECDSA P-256 certificate made by the run), "
          f"both pinned to the server's core; `spry-load` over `ws://` and `wss://` ({first.get('tls_protocol', '?')}, {first.get('tls_cipher', '?')}, "
          "OpenSSL defaults on both sides), rounds interleaved with the order alternating. Ratios are medians of per-round wss/ws ratios.")
        w("")
        w("| scenario | transport | msgs/s (min-max) | p50 us | p99 us | server CPU us/msg | server core use | client core use |")
        w("|---|---|---:|---:|---:|---:|---:|---:|")
        for scen, label in (("tls_echo_d1", "echo, 100 connections, 32 B, depth 1"), ("tls_echo_d16", "echo, 100 connections, 32 B, depth 16")):
            for srv in ("ws", "wss"):
                t = tls[scen][srv]
                if t["rate"] is None:
                    continue
                rng = f" ({fmt(t['rate_min'])}-{fmt(t['rate_max'])})" if t["rate_min"] != t["rate_max"] else ""
                util = f"{t['util'] * 100:.0f} %" if t["util"] is not None else "n/a"
                client = f"{t['client'] * 100:.0f} %" if t["client"] is not None else "n/a"
                w(f"| {label} | {srv} | {fmt(t['rate'])}{rng} | {fmt(t['p50'], 1)} | {fmt(t['p99'], 1)} | {fmt(t['cpu'], 3)} | {util} | {client} |")
        w("")
        parts = []
        for scen, lbl in (("tls_echo_d1", "d1"), ("tls_echo_d16", "d16")):
            for what, r in (("throughput", r_tls[scen]), ("server CPU/msg", r_tls_cpu[scen])):
                if r[0] is not None:
                    parts.append(f"{what} {lbl} {fmt_ratio(r[0])} ({r[1]:.2f}-{r[2]:.2f})")
        if parts:
            w("Same-run ratios (wss / ws): " + "; ".join(parts) + ".")
            w("")
        if any(hs.values()):
            w(f"Handshakes on one loop: `spry-load --mode handshake` keeps {(hs['full'] or hs['resumed'])[0]['kv'].get('connections', '?')} "
              "connections in flight, each connected, taken through the TLS handshake (no certificate verification) and closed, then again; "
              "resumed: every connection offers the session ticket of the first (`--resume`). When the server's core use is well under 100 % "
              "and the client's near it, the client was the limit (a full handshake costs it more than the server: it verifies the server's signature).")
            w("")
            w("| handshakes | per second (min-max) | server CPU us/handshake | server core use | client core use | connect to done, p50 us | p99 us | resumed |")
            w("|---|---:|---:|---:|---:|---:|---:|---:|")
            for kind in ("full", "resumed"):
                scen = f"tls_handshake_{kind}"
                rates = [v for v in d.values(scen, "wss", "hs_per_s") if v is not None]
                if not rates:
                    continue
                rate = med(rates)
                rng = f" ({fmt(min(rates))}-{fmt(max(rates))})" if min(rates) != max(rates) else ""
                util = d.median(scen, "wss", "server_cpu_util")
                client = d.median(scen, "wss", "client_cpu_util")
                total = sum(v for v in d.values(scen, "wss", "handshakes") if v is not None)
                res = sum(v for v in d.values(scen, "wss", "resumed") if v is not None)
                share = f"{res / total * 100:.0f} %" if total else "n/a"
                w(f"| {kind} | {fmt(rate)}{rng} | {fmt(d.median(scen, 'wss', 'server_cpu_us_per_hs'), 1)} | "
                  f"{(util * 100 if util is not None else 0):.0f} % | {(client * 100 if client is not None else 0):.0f} % | {fmt(d.median(scen, 'wss', 'p50_us'), 1)} | {fmt(d.median(scen, 'wss', 'p99_us'), 1)} | {share} |")
            w("")
        if flood["quiet"]["p99"] is not None:
            w(f"- Handshake flood: 100 wss connections paced at 10,000 msgs/s in total (open loop, 32 B): alone p50 {fmt(flood['quiet']['p50'], 1)} us, "
              f"p99 {fmt(flood['quiet']['p99'], 1)} us (server core {(flood['quiet']['util'] or 0) * 100:.0f} %); while a second client opens full "
              f"handshakes as fast as it can ({fmt(flood_hs)}/s): p50 {fmt(flood['flood']['p50'], 1)} us, p99 {fmt(flood['flood']['p99'], 1)} us "
              f"(server core {(flood['flood']['util'] or 0) * 100:.0f} %). The server spends at most 1 ms per loop turn on handshakes.")
        for srv in ("ws", "wss"):
            kv = d.one("tls_idle", srv) or {}
            if kv:
                w(f"- Idle {srv}: {kv.get('connections')} connections open in {kv.get('connect_s')} s "
                  f"(server CPU {kv.get('server_cpu_us_per_conn', '?')} us per connection set-up); server RSS {kv.get('rss_before_kb')} kB before, "
                  f"{kv.get('rss_after_kb')} kB after holding them: **{fmt(num(kv.get('rss_per_conn_bytes')))} bytes per connection**.")
        if any(tls_idle.values()):
            w("")

    # ---- permessage-deflate
    if dfl_sizes or any(v is not None for v in dfl_fan.values()) or any(v is not None for v in dfl_idle.values()):
        w("## permessage-deflate: examples/echo --compression off, shared, dedicated")
        w("")
        def negotiated(m):
            return next((r["kv"]["extension"] for r in d.rows
                         if r["scenario"].startswith("deflate_") and r["server"] == m and r["kv"].get("extension")), None)
        w("Three `examples/echo --threads 1` servers on the server's core, `--compression off`, `shared` and `dedicated`; rounds interleaved, "
          "the order rotating. `spry-load --json` sends realistic JSON text (a chat message; a document of product records); to the "
          "compressing servers it offers `permessage-deflate; client_max_window_bits` as a browser does (`--deflate`), sends its own "
          "messages compressed (RSV1, context reset per message) and inflates and checks every echo. Ratios are medians of per-round "
          "ratios against `off` in the same round. Wire bytes: WebSocket frame header, mask and payload per message, each way.")
        exts = [f"{m} `{negotiated(m)}`" for m in ("shared", "dedicated") if negotiated(m)]
        if exts:
            w("Negotiated (`;` separates the parameters): " + ", ".join(exts) + ".")
        w("")
        if dfl_sizes:
            w("| echo, 100 connections, depth 16 | compression | msgs/s (min-max) | vs off | server CPU us/msg | vs off | server core use | client core use | wire bytes/msg sent | received |")
            w("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
            for size in dfl_sizes:
                scen = f"deflate_echo_{size}"
                label = f"{size:,} B JSON " + ("chat message" if size < 1024 else "document")
                for m in dfl_modes:
                    rates = [v for v in d.values(scen, m, "msgs_per_s") if v is not None]
                    if not rates:
                        continue
                    rng = f" ({fmt(min(rates))}-{fmt(max(rates))})" if min(rates) != max(rates) else ""
                    if m == "off":
                        vs_rate = vs_cpu = "-"
                    else:
                        rr = d.ratio("msgs_per_s", scen, "msgs_per_s", scen, num_srv=m, den_srv="off")
                        rc = d.ratio("server_cpu_us_per_msg", scen, "server_cpu_us_per_msg", scen, num_srv=m, den_srv="off")
                        vs_rate, vs_cpu = fmt_ratio(rr[0]), fmt_ratio(rc[0])
                    util = d.median(scen, m, "server_cpu_util")
                    client = d.median(scen, m, "client_cpu_util")
                    w(f"| {label} | {m} | {fmt(med(rates))}{rng} | {vs_rate} | {fmt(d.median(scen, m, 'server_cpu_us_per_msg'), 2)} | {vs_cpu} | "
                      f"{(util or 0) * 100:.0f} % | {(client or 0) * 100:.0f} % | {fmt(d.median(scen, m, 'wire_out_per_msg'), 1)} | {fmt(d.median(scen, m, 'wire_in_per_msg'), 1)} |")
            w("")
        if any(v is not None for v in dfl_fan.values()):
            w(f"Fan-out: 1 publisher, {(d.one('deflate_fanout', 'off') or d.one('deflate_fanout', 'shared') or {}).get('subscribers', '?')} subscribers on `/broadcast`, "
              "16 publishes in flight, a 300-byte JSON chat message. With `--deflate` the first subscriber's copy of every publish is inflated "
              "and checked, every other copy compared byte for byte with the publish's first delivery (a server compressing per subscriber, "
              "or sending different bytes, shows as mismatches, counted as errors).")
            w("")
            w("| fan-out | deliveries/s (min-max) | vs off | server CPU us/delivery | vs off | server core use | wire bytes/delivery | deliveries compressed | inflated per publish | mismatches |")
            w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
            for m in dfl_modes:
                rates = [v for v in d.values("deflate_fanout", m, "deliveries_per_s") if v is not None]
                if not rates:
                    continue
                rng = f" ({fmt(min(rates))}-{fmt(max(rates))})" if min(rates) != max(rates) else ""
                if m == "off":
                    vs_rate = vs_cpu = "-"
                else:
                    rr = r_dfl_fan[m]
                    rc = d.ratio("server_cpu_us_per_msg", "deflate_fanout", "server_cpu_us_per_msg", "deflate_fanout", num_srv=m, den_srv="off")
                    vs_rate = fmt_ratio(rr[0]) + (f" ({rr[1]:.2f}-{rr[2]:.2f})" if rr[1] is not None and rr[1] != rr[2] else "")
                    vs_cpu = fmt_ratio(rc[0])
                util = d.median("deflate_fanout", m, "server_cpu_util")
                rows = d.by[("deflate_fanout", m)]
                mism = sum(num(r["kv"].get("mismatches"), 0) for r in rows)
                frac = d.median("deflate_fanout", m, "compressed_in_frac")
                per_pub = fmt(d.median("deflate_fanout", m, "inflated_per_publish"), 2) if m != "off" else "-"
                w(f"| {m} | {fmt(med(rates))}{rng} | {vs_rate} | {fmt(d.median('deflate_fanout', m, 'server_cpu_us_per_msg'), 3)} | {vs_cpu} | "
                  f"{(util or 0) * 100:.0f} % | {fmt(d.median('deflate_fanout', m, 'wire_in_per_msg'), 1)} | "
                  f"{'-' if frac is None else f'{frac * 100:.0f} %'} | {per_pub} | {fmt(mism) if m != 'off' else '-'} |")
            w("")
        if any(v is not None for v in dfl_idle.values()):
            w(f"Idle: {dfl_idle_conns or '?'} connections on a fresh server each (offering deflate to the compressing ones), server RSS per connection "
              "after one warm-up connection: after the handshake alone, and after one 300-byte JSON message echoed on every connection "
              "(compressed both ways) and a quiet hold past the example's `releaseAfter` (10 s), so that dedicated mode has given its "
              "contexts back. The peak column is the server's RSS once every connection's message was echoed.")
            w("")
            w("| compression | after the handshake, bytes/connection | vs off | after one message and the hold | vs off | RSS once all echoed (kB) | hold |")
            w("|---|---:|---:|---:|---:|---:|---:|")
            for m in dfl_modes:
                hs, ec = dfl_idle.get((m, "handshake")), dfl_idle.get((m, "echoed"))
                if hs is None and ec is None:
                    continue
                def delta(v, k):
                    b = dfl_idle.get(("off", k))
                    return "-" if m == "off" or v is None or b is None else f"{v - b:+,.0f}"
                kv = d.one("deflate_idle", m, "echoed") or {}
                w(f"| {m} | {fmt(hs)} | {delta(hs, 'handshake')} | {fmt(ec)} | {delta(ec, 'echoed')} | {fmt(num(kv.get('rss_echoed_kb')))} "
                  f"(from {fmt(num(kv.get('rss_before_kb')))}) | {kv.get('hold_s', '?')} s |")
            w("")

    # ---- coroutines
    co_rates = {(dep, srv): d.median(f"co_echo_d{dep}", srv, "msgs_per_s") for dep in (1, 16) for srv in ("cb", "co")}
    if any(v is not None for v in co_cg.values()) or any(v is not None for v in co_rates.values()):
        w("## Coroutines: examples/echo /echo (listen callback) vs /echo-co (co_await ws.next())")
        w("")
        w("One server, both routes; `/echo-co` pulls each message with `co_await ws.next()`, echoes it and awaits `ws.drain()`. "
          "Throughput rounds interleave the two routes (the order alternating); instructions per message by the difference method "
          "(a fresh server under callgrind per count); idle: a fresh server per route, one message echoed on every connection, then held.")
        w("")
        w("| measure | callback | coroutine | coroutine / callback |")
        w("|---|---:|---:|---:|")
        for cfg, label in (("d1", "instructions/message, depth 1"), ("paced", "instructions/message, paced")):
            a, b = co_cg[(cfg, "co")], co_cg[(cfg, "cb")]
            w(f"| {label} | {fmt(b)} | {fmt(a)} | {fmt_ratio(a / b if a and b else None)} |")
        for dep in (1, 16):
            rr = d.ratio("msgs_per_s", f"co_echo_d{dep}", "msgs_per_s", f"co_echo_d{dep}", num_srv="co", den_srv="cb")
            rng = f" ({fmt_ratio(rr[1])}-{fmt_ratio(rr[2])})" if rr[0] is not None else ""
            conns_txt = (d.one(f"co_echo_d{dep}", "cb") or {}).get("connections", "?")
            w(f"| msgs/s, depth {dep} ({conns_txt} connections) | {fmt(co_rates[(dep, 'cb')])} | {fmt(co_rates[(dep, 'co')])} | {fmt_ratio(rr[0])}{rng} |")
            cb_cpu = d.median(f"co_echo_d{dep}", "cb", "server_cpu_us_per_msg")
            co_cpu = d.median(f"co_echo_d{dep}", "co", "server_cpu_us_per_msg")
            w(f"| server CPU us/message, depth {dep} | {fmt(cb_cpu, 3)} | {fmt(co_cpu, 3)} | {fmt_ratio(co_cpu / cb_cpu if co_cpu and cb_cpu else None)} |")
        ib = num((d.one("co_idle", "cb") or {}).get("rss_per_conn_bytes"))
        ic = num((d.one("co_idle", "co") or {}).get("rss_per_conn_bytes"))
        conns = (d.one("co_idle", "co") or d.one("co_idle", "cb") or {}).get("connections", "?")
        delta = f"{ic - ib:+,.0f} B" if ib is not None and ic is not None else "n/a"
        w(f"| server RSS per idle connection ({conns}, bytes) | {fmt(ib)} | {fmt(ic)} | {delta} |")
        w("")

    # ---- http under callgrind
    if any(h["total"] is not None for h in hcg.values()):
        w("## HTTP: user-space instructions per request (callgrind, examples/hello)")
        w("")
        w("`GET /hello/world` (\"Hello, world\", a global middleware adding a header) on 100 keep-alive connections, "
          "`spry-load --mode http` sending an exact count; difference method as below. `llhttp_execute` is its inclusive cost "
          "(the parser's callbacks into spry's adapter included); \"llhttp's own code\" is the self cost of the `llhttp*` functions.")
        w("")
        w("| request | requests (small vs large) | instructions/request | in llhttp_execute | outside llhttp_execute | llhttp's own code | goal |")
        w("|---|---:|---:|---:|---:|---:|---|")
        goals = {"bare_d16": "<= 3,000 in total", "browser_d16": "<= 2,100 outside llhttp_execute", "bare_d1": "none"}
        for cfg, label in http_cfgs:
            h = hcg[cfg]
            if h["total"] is None:
                continue
            small = d.one(f"callgrind_http_{cfg}", "spry", "small") or {}
            large = d.one(f"callgrind_http_{cfg}", "spry", "large") or {}
            share = f" ({h['llhttp'] / h['total'] * 100:.0f} %)" if h["llhttp"] is not None and h["total"] else ""
            w(f"| {label} | {small.get('requests', '?')} vs {large.get('requests', '?')} | {fmt(h['total'])} | {fmt(h['llhttp'])}{share} | "
              f"{fmt(h['outside'])} | {fmt(h['llhttp_self'])} | {goals[cfg]} |")
        w("")
        w("Per-function tables (self cost per request, difference of the two runs): `profiles/callgrind.http_*.txt`.")
        w("")

    # ---- callgrind and syscalls
    if any(v is not None for v in cg.values()) or sc_total.get("spry") is not None or d.one("fanout_syscalls", "spry", "large"):
        w("## Instructions and system calls per message")
        w("")
        w("Difference method: the server runs under callgrind (or strace) twice, driven for a small and a large exact message count; "
          "(large - small) / (messages difference) cancels start-up, connection set-up and shutdown.")
        w("")
        w("| configuration | raw libuv | spry | spry / raw |")
        w("|---|---:|---:|---:|")
        for cfg, label in (("d1", "closed loop, depth 1"), ("d16", "closed loop, depth 16"), ("paced", "paced 2,000 msgs/s"),
                           ("bin4k", "4 KiB binary, depth 16 (no target)")):
            if cg.get((cfg, "spry")) is None:
                continue
            small = d.one(f"callgrind_{cfg}", "spry", "small") or {}
            large = d.one(f"callgrind_{cfg}", "spry", "large") or {}
            counts = f" ({small.get('messages', '?')} vs {large.get('messages', '?')} messages)"
            spry_txt = fmt(cg.get((cfg, "spry")))
            if cfg == "bin4k":
                spry_txt += f" ({cg[(cfg, 'spry')] / 4096:.1f} per payload byte)"
            w(f"| instructions/message, {label}{counts} | {fmt(cg.get((cfg, 'raw')))} | {spry_txt} | {fmt_ratio(cgratio(cfg))} |")
        if sc_total.get("spry") is not None:
            for srv in ("raw", "spry"):
                det = sc_detail[srv]
                w(f"| syscalls/message, paced, {srv}: " + ", ".join(f"{k} {det[k]:.2f}" for k in sorted(det, key=lambda k: -det[k]) if k != "total" and abs(det[k]) >= 0.005)
                  + f" | {fmt(sc_total['raw'], 2) if srv == 'raw' else ''} | {fmt(sc_total['spry'], 2) if srv == 'spry' else ''} | |")
        fs_small = d.one("fanout_syscalls", "spry", "small")
        fs_large = d.one("fanout_syscalls", "spry", "large")
        if fs_small and fs_large:
            dn = num(fs_large["deliveries"]) - num(fs_small["deliveries"])
            parts = []
            for k in fs_large:
                if k in ("mode", "size", "publishes", "deliveries"):
                    continue
                v = (num(fs_large.get(k), 0) - num(fs_small.get(k), 0)) / dn
                parts.append(f"{'all' if k == 'all' else k} {v:.2f}")
            w(f"| syscalls/delivery, fan-out 1 x 1,000, window 16 (perf stat) | | {', '.join(parts)} | |")
        w("")
        w("An epoll wait below 1.0 per paced message means some wake-ups carried two messages (the client fell behind its schedule on the loaded machine).")
        w("")

    # ---- idle
    if idle.get("spry") is not None:
        w("## Idle connections")
        w("")
        for srv in ("raw", "spry"):
            kv = d.one("idle", srv) or {}
            if kv:
                w(f"- {srv}: {kv.get('connections')} connections open in {kv.get('connect_s')} s "
                  f"(server CPU {kv.get('server_cpu_us_per_conn', '?')} us per connection set-up); server RSS {kv.get('rss_before_kb')} kB before, "
                  f"{kv.get('rss_after_kb')} kB after holding them: **{fmt(num(kv.get('rss_per_conn_bytes')))} bytes per connection** "
                  "(user space only; kernel socket buffers are not in RSS).")
        w("")

    # ---- where the time goes
    # (the deflate targets, the ones with a label of their own, have no profile here)
    misses = [t for t in targets if not t[5] and measured(t) and not t[7]]
    missed_cfg = {cfg for cfg, i in (("d1", 3), ("d16", 4), ("paced", 5)) if len(targets) > i and not targets[i][5]}
    # The 4 KiB throughput gap has no target of its own; its profile explains it.
    if r_bin[0] is not None and r_bin[0] < 0.8:
        missed_cfg.add("bin4k")
    if misses:
        w("## Where the time goes (targets missed)")
        w("")
    for cfg, label in (("d1", "depth 1"), ("d16", "depth 16"), ("paced", "paced 2,000/s"), ("bin4k", "4 KiB binary, depth 16")):
        small = d.one(f"callgrind_{cfg}", "spry", "small")
        large = d.one(f"callgrind_{cfg}", "spry", "large")
        if not small or not large:
            continue
        n = num(large["messages"]) - num(small["messages"])
        top, by_obj = function_diff(profiles, cfg, "spry", n)
        _, raw_obj = function_diff(profiles, cfg, "raw", n)
        if not top:
            continue
        lines = [f"callgrind, spry echo, {label}: user-space instructions per message by function (self cost, difference of the two runs)", ""]
        lines.append(f"{'instr/msg':>10}  function  [object]")
        for (fn, obj), v in top[:25]:
            lines.append(f"{v:10.1f}  {short_function(fn)}  [{os.path.basename(obj)}]")
        lines.append("")
        lines.append("by object: " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(by_obj.items(), key=lambda kv: -kv[1]) if abs(v) >= 1))
        if raw_obj:
            lines.append("raw libuv echo by object: " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(raw_obj.items(), key=lambda kv: -kv[1]) if abs(v) >= 1))
        with open(os.path.join(profiles, f"callgrind.{cfg}.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
        if cfg in missed_cfg:
            w(f"### callgrind, {label}: instructions per message")
            w("")
            w("By shared object: " + ", ".join(f"{k} **{v:.0f}**" for k, v in sorted(by_obj.items(), key=lambda kv: -kv[1]) if abs(v) >= 1)
              + (" (raw libuv echo: " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(raw_obj.items(), key=lambda kv: -kv[1]) if abs(v) >= 1) + ")" if raw_obj else "") + ".")
            w("")
            w("```")
            w(f"{'instr/msg':>10}  function  [object]")
            for (fn, obj), v in top[:15]:
                w(f"{v:10.1f}  {short_function(fn)}  [{os.path.basename(obj)}]")
            w("```")
            w(f"(full list: `profiles/callgrind.{cfg}.txt`)")
            w("")
    http_missed = {"bare_d16": len(targets) > 9 and not targets[9][5], "browser_d16": len(targets) > 10 and not targets[10][5]}
    for cfg, label in http_cfgs:
        small = d.one(f"callgrind_http_{cfg}", "spry", "small")
        large = d.one(f"callgrind_http_{cfg}", "spry", "large")
        if not small or not large:
            continue
        n = num(large["requests"]) - num(small["requests"])
        top, by_obj = function_diff(profiles, f"http_{cfg}", "spry", n)
        if not top:
            continue
        h = hcg[cfg]
        lines = [f"callgrind, examples/hello, {label}: user-space instructions per request by function (self cost, difference of the two runs)", ""]
        lines.append(f"total {fmt(h['total'])}; llhttp_execute inclusive {fmt(h['llhttp'])}; outside it {fmt(h['outside'])}; llhttp's own code {fmt(h['llhttp_self'])}")
        lines.append("")
        lines.append(f"{'instr/req':>10}  function  [object]")
        for (fn, obj), v in top[:40]:
            lines.append(f"{v:10.1f}  {short_function(fn)}  [{os.path.basename(obj)}]")
        lines.append("")
        lines.append("by object: " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(by_obj.items(), key=lambda kv: -kv[1]) if abs(v) >= 1))
        with open(os.path.join(profiles, f"callgrind.http_{cfg}.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
        if http_missed.get(cfg):
            w(f"### callgrind, HTTP {label}: instructions per request")
            w("")
            w("By shared object: " + ", ".join(f"{k} **{v:.0f}**" for k, v in sorted(by_obj.items(), key=lambda kv: -kv[1]) if abs(v) >= 1) + ".")
            w("")
            w("```")
            w(f"{'instr/req':>10}  function  [object]")
            for (fn, obj), v in top[:15]:
                w(f"{v:10.1f}  {short_function(fn)}  [{os.path.basename(obj)}]")
            w("```")
            w(f"(full list: `profiles/callgrind.http_{cfg}.txt`)")
            w("")
    fan_prof = os.path.join(profiles, "fanout.perf.txt")
    if os.path.exists(fan_prof) and os.path.getsize(fan_prof) > 0:
        w("### Fan-out: perf (cpu-clock, kernel included), server process")
        w("")
        w("```")
        with open(fan_prof) as f:
            for line in f.readlines()[:20]:
                w(line.rstrip()[:150])
        w("```")
        w("(`profiles/fanout.perf.txt`)")
        w("")
    ms = d.one("massif", "spry")
    if ms:
        conns = int(ms.get("connections", "0") or 0)
        summary = massif_summary(os.path.join(profiles, ".massif.out"), conns)
        if summary and conns:
            heap, extra, sites = summary
            lines = [f"massif, spry echo holding {conns} idle WebSockets: heap bytes per connection by allocation site (largest snapshot)", ""]
            lines.append(f"total heap {heap / conns:.0f} B/connection + malloc overhead {extra / conns:.0f} B/connection "
                         "(includes start-up allocations spread over the connections)")
            for b, site in sorted(sites, key=lambda s: -s[0])[:12]:
                lines.append(f"{b / conns:8.0f}  {short_function(site)}")
            with open(os.path.join(profiles, "idle.massif.txt"), "w") as f:
                f.write("\n".join(lines) + "\n")
            w(f"### Idle memory: massif, {conns} idle WebSockets")
            w("")
            w("```")
            for line in lines[2:]:
                w(line)
            w("```")
            w("")

    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write("\n".join(md) + "\n")

    # ---- chart
    chart(args.out, targets, [
        ("echo d1 msgs/s", r_d1[0]), ("echo d16 msgs/s", r_d16[0]), ("4 KiB d16 msgs/s", r_bin[0]),
        ("fan-out deliv/s vs d16", r_fan[0]), ("CPU/msg at 50k/s", r_cpu50[0]),
        ("instr/msg d1", cgratio("d1")), ("instr/msg d16", cgratio("d16")), ("instr/msg paced", cgratio("paced")),
        ("RSS/idle conn", (idle["spry"] / idle["raw"]) if idle.get("spry") and idle.get("raw") else None),
    ])


def chart(out, targets, ratios):
    gp = shutil.which("gnuplot")
    if not gp:
        print("report: gnuplot not installed (apt-get install -y gnuplot-nox): no chart")
        return
    short = ["echo d1 thrpt", "echo d16 thrpt", "CPU/msg 50k/s", "instr d1", "instr d16", "instr paced", "syscalls paced", "RSS/idle conn", "fan-out",
             "HTTP instr bare d16", "HTTP browser ex llhttp", "wss/ws d16 thrpt", "RSS/idle wss conn"]
    tdat = os.path.join(out, ".targets.dat")
    with open(tdat, "w") as f:
        j = 0
        for i, t in enumerate(targets):
            if not measured(t):
                continue
            score = t[6] if t[6] is not None else 0
            label = t[7] or (short[i] if i < len(short) else t[0])
            # Column 3 is drawn (kept inside the y range, so that a far miss still
            # shows as a bar), column 5 is the figure printed over it.
            f.write(f'{j} "{label}" {max(score, 0.06):.4f} {1 if t[5] else 0} {score:.4f}\n')
            j += 1
    rdat = os.path.join(out, ".ratios.dat")
    present = [r for r in ratios if r[1] is not None]
    with open(rdat, "w") as f:
        for i, (name, v) in enumerate(present):
            f.write(f'{i} "{name}" {v:.4f}\n')
    # A run that skipped every spry/raw section (e.g. only httpcg): an empty
    # panel rather than a gnuplot error on an empty data file.
    ratio_plot = (f"""plot "{rdat}" using 1:3:xtic(2) with boxes lc rgb "#4682b4", \\
     "{rdat}" using 1:($3*1.15):(sprintf("%.2fx", $3)) with labels""" if present else
                  """set xrange [0:1]
set label 3 "(no spry/raw figure in this run)" at graph 0.5, graph 0.5 center
plot 1/0 notitle""")
    script = f"""
set terminal pngcairo size 1400,560 font "sans,10"
set output "{os.path.join(out, 'results.png')}"
set multiplot layout 1,2 title "spry vs raw libuv echo, same run (one loop, 100 connections, 32-byte text)"
set style fill solid 0.8 border -1
set boxwidth 0.6
set xtics rotate by -35 scale 0
set grid ytics
set key off
set title "Targets: measured / goal (>= 1 meets it; log scale)"
set logscale y
set yrange [0.05:5]
set arrow 1 from graph 0, first 1 to graph 1, first 1 nohead lw 2 dt 2 lc rgb "#333333"
plot "{tdat}" using 1:3:($4 == 1 ? 0x2e8b57 : 0xcc3333):xtic(2) with boxes lc rgb variable, \\
     "{tdat}" using 1:($3*1.15):(sprintf("%.2f", $5)) with labels
unset arrow 1
set title "spry / raw libuv (throughput: higher is better; costs: lower is better; log scale)"
set yrange [0.02:200]
set arrow 2 from graph 0, first 1 to graph 1, first 1 nohead lw 2 dt 2 lc rgb "#333333"
{ratio_plot}
unset multiplot
"""
    r = subprocess.run([gp], input=script, text=True, capture_output=True)
    if r.returncode != 0:
        print("report: gnuplot failed:", r.stderr.strip()[:500])
    for p in (tdat, rdat):
        os.remove(p)


if __name__ == "__main__":
    main()
