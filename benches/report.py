#!/usr/bin/env python3
"""Tables, medians and the latency plot of benches/compare.sh, benches/scale.sh and
benches/soak.sh.

Reads the JSON lines that `vault-load --json` prints (one object per run). Standard library
only. Subcommands:

  machine                      this machine and its load, as JSON
  compare --runs F --out F     medians per row, the table with ratios vs vaultd, the goals
  sweep --runs F --out F       medians per (row, concurrency)
  plot --sweep F --out F.svg   p99 latency against concurrency, one line per row
  scale --load F --runs F --out F   the scale run's summary
  soak --samples F --entries F      the soak run's summary, appended to the samples file
"""

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time


def machine(fsync_dir=None):
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    out = {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "mem_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if fsync_dir:
        out["fdatasync_us"] = fdatasync_us(fsync_dir)
    return out


def fdatasync_us(directory, seconds=1.0):
    """Median latency of an 8 KiB write + fdatasync in `directory`: what every durable
    acknowledgement on this disk costs at least, at the moment of the run."""
    path = os.path.join(directory, "fdatasync-probe.tmp")
    samples = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        block = b"x" * 8192
        end = time.monotonic() + seconds
        while time.monotonic() < end or len(samples) < 10:
            t = time.perf_counter()
            os.pwrite(fd, block, 0)
            os.fdatasync(fd)
            samples.append((time.perf_counter() - t) * 1e6)
    finally:
        os.close(fd)
        os.unlink(path)
    return round(statistics.median(samples))


def read_runs(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def grouped(runs, key):
    groups = {}
    for run in runs:
        groups.setdefault(key(run), []).append(run)
    return groups


def summarize(label, runs):
    hwm = [r["daemon"]["vm_hwm_kib"] for r in runs if r.get("daemon")]
    return {
        "label": label,
        "system": runs[0]["system"],
        "workload": runs[0]["workload"],
        "pg_crypto": runs[0].get("pg_crypto"),
        "concurrency": runs[0]["concurrency"],
        "value_size": runs[0]["value_size"],
        "runs": len(runs),
        "ops_per_sec": median([r["ops_per_sec"] for r in runs]),
        "p50_us": median([r["latency"]["p50_us"] for r in runs]),
        "p99_us": median([r["latency"]["p99_us"] for r in runs]),
        "p999_us": median([r["latency"]["p999_us"] for r in runs]),
        "errors": sum(r["errors"] for r in runs),
        "each_ops_per_sec": [round(r["ops_per_sec"]) for r in runs],
        "each_p99_us": [round(r["latency"]["p99_us"]) for r in runs],
        "daemon_vm_hwm_mib": round(max(hwm) / 1024, 1) if hwm else None,
        # CPU of the server's process tree during the measured phase (rows run with --pid).
        "daemon_cpu_us_per_op": median([r.get("daemon_cpu_us_per_op") for r in runs]),
        "daemon_cores": median([r.get("daemon_cores") for r in runs]),
        "each_daemon_cpu_us_per_op": [
            round(r["daemon_cpu_us_per_op"], 1) for r in runs if r.get("daemon_cpu_us_per_op")
        ],
    }


# Goals of issue 7 (never asserted: reported here, met or missed).
GOALS = [
    ("vaultd unseal", "redis GET", 0.5, "unseal >= 0.5x redis GET ops/s"),
    ("vaultd unseal", "postgres aes decrypt read", 2.0, "unseal >= 2x PostgreSQL raw-AES read"),
    ("vaultd put", "redis SET appendfsync always", 1.0, "put >= 1.0x redis SET appendfsync always"),
    ("vaultd put", "postgres aes encrypt upsert", 3.0, "put >= 3x PostgreSQL raw-AES upsert"),
]


def compare(args):
    runs = read_runs(args.runs)
    rows = [summarize(label, rs) for label, rs in grouped(runs, lambda r: r["label"]).items()]
    by_label = {row["label"]: row for row in rows}
    for row in rows:
        ref = {"read": args.reference_read, "write": args.reference_write}.get(kind_of(row))
        ref_row = by_label.get(ref)
        row["vaultd_ratio"] = (
            ref_row["ops_per_sec"] / row["ops_per_sec"]
            if ref_row and row["ops_per_sec"] and row["system"] != "vaultd"
            else None
        )
    goals = []
    for mine, theirs, factor, text in GOALS:
        if mine in by_label and theirs in by_label and by_label[theirs]["ops_per_sec"]:
            ratio = by_label[mine]["ops_per_sec"] / by_label[theirs]["ops_per_sec"]
            goals.append({"goal": text, "ratio": round(ratio, 2), "met": ratio >= factor})
    if "vaultd unseal" in by_label:
        p99 = by_label["vaultd unseal"]["p99_us"] / 1000
        goals.append({"goal": "p99 unseal <= 2 ms", "p99_ms": round(p99, 3), "met": p99 <= 2.0})
    before = load_json(args.machine_before)
    after = load_json(args.machine_after)
    out = {"machine": before, "machine_after": after, "rows": rows, "goals": goals, "runs": runs}
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print_table(rows, before, after)
    for g in goals:
        value = f"{g['ratio']}x" if "ratio" in g else f"{g['p99_ms']} ms"
        print(f"  goal {'met   ' if g['met'] else 'MISSED'} {g['goal']}: {value}")
    print(f"  written: {os.path.relpath(args.out)}")


def kind_of(row):
    return {"unseal": "read", "put": "write"}.get(row["workload"])


def load_json(path):
    if not path:
        return None
    with open(path) as f:
        return json.load(f)


def print_table(rows, before, after):
    if before:
        print(
            f"\n{before['nproc']} cores, {before['cpu']}, {before['mem_gib']} GiB; "
            f"load average {before['loadavg'][0]} before, "
            f"{after['loadavg'][0] if after else '?'} after; 8 KiB write + fdatasync "
            f"{before.get('fdatasync_us', '?')} us before, "
            f"{after.get('fdatasync_us', '?') if after else '?'} us after"
        )
    n = rows[0]["runs"] if rows else 0
    c = rows[0]["concurrency"] if rows else 0
    size = rows[0]["value_size"] if rows else 0
    print(f"medians of {n} runs, {c} connections, {size}-byte values\n")
    head = (
        f"{'system / op':<36} {'ops/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} "
        f"{'errors':>6} {'CPU us/op':>9} {'cores':>5} {'vaultd/this':>11}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        ratio = f"{r['vaultd_ratio']:.2f}x" if r["vaultd_ratio"] else "-"
        cpu = fmt_or_dash(r.get("daemon_cpu_us_per_op"), ".1f")
        cores = fmt_or_dash(r.get("daemon_cores"), ".2f")
        print(
            f"{r['label']:<36} {r['ops_per_sec']:>9.0f} {r['p50_us'] / 1e3:>8.3f} "
            f"{r['p99_us'] / 1e3:>8.3f} {r['p999_us'] / 1e3:>9.3f} {r['errors']:>6} "
            f"{cpu:>9} {cores:>5} {ratio:>11}"
        )
    print("\nvaultd/this: vaultd unseal (reads) or vaultd put (writes) ops/s over this row's.")
    print(
        "CPU us/op, cores: user + system CPU of the server's process and the processes below it\n"
        "(PostgreSQL: the postmaster and its backends) over the measured phase, per operation\n"
        "and over the wall time; '-' where no PID was given."
    )


def fmt_or_dash(value, spec):
    return "-" if value is None else format(value, spec)


def sweep(args):
    runs = read_runs(args.runs)
    points = []
    for (label, c), rs in grouped(runs, lambda r: (r["label"], r["concurrency"])).items():
        s = summarize(label, rs)
        points.append(s)
    with open(args.out, "w") as f:
        json.dump({"machine": machine(), "points": points}, f, indent=1)
        f.write("\n")
    print(f"\n{'p99 ms by concurrency':<30}" + "".join(f"{c:>9}" for c in levels(points)))
    for label in dict.fromkeys(p["label"] for p in points):
        by_c = {p["concurrency"]: p for p in points if p["label"] == label}
        print(
            f"{label:<30}"
            + "".join(
                f"{by_c[c]['p99_us'] / 1e3:>9.3f}" if c in by_c else f"{'-':>9}"
                for c in levels(points)
            )
        )
    print(f"  written: {os.path.relpath(args.out)}")


def levels(points):
    return sorted({p["concurrency"] for p in points})


COLORS = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e"]


def plot(args):
    with open(args.sweep) as f:
        data = json.load(f)
    points = data["points"]
    labels = list(dict.fromkeys(p["label"] for p in points))
    xs = levels(points)
    ys = [p["p99_us"] / 1e3 for p in points if p["p99_us"]]
    w, h, left, right, top, bottom = 760, 470, 70, 220, 50, 72
    pw, ph = w - left - right, h - top - bottom
    x0, x1 = math.log10(min(xs)), math.log10(max(xs))
    y0 = math.floor(math.log10(min(ys)))
    y1 = math.ceil(math.log10(max(ys)))
    if y1 == y0:
        y1 += 1

    def px(c):
        return left + (0.5 * pw if x1 == x0 else (math.log10(c) - x0) / (x1 - x0) * pw)

    def py(ms):
        return top + ph - (math.log10(ms) - y0) / (y1 - y0) * ph

    m = data.get("machine", {})
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{w}" height="{h}" fill="white"/>',
        f'<text x="{left}" y="20" font-size="15" font-weight="bold">p99 latency against '
        "concurrency</text>",
        f'<text x="{left}" y="36" fill="#555">{points[0]["value_size"]}-byte values, one request '
        f"in flight per connection, medians of {max(p['runs'] for p in points)} run(s) per point, "
        "log-log</text>",
        f'<text x="{left}" y="{h - 4}" fill="#555" font-size="10">{esc(m.get("cpu", ""))}, '
        f'{m.get("nproc", "?")} cores, load average {m.get("loadavg", ["?"])[0]} at the end; '
        f'{m.get("time", "")}; benches/compare.sh</text>',
    ]
    for e in range(y0, y1 + 1):
        for mult in (1, 2, 5):
            v = mult * 10**e
            if v > 10**y1:
                break
            y = py(v)
            out.append(
                f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" '
                f'stroke="{"#ccc" if mult == 1 else "#eee"}"/>'
            )
            out.append(
                f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{fmt_ms(v)}</text>'
            )
    for c in xs:
        x = px(c)
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + ph}" stroke="#eee"/>')
        out.append(f'<text x="{x:.1f}" y="{top + ph + 18}" text-anchor="middle">{c}</text>')
    out.append(
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>'
    )
    out.append(
        f'<text x="{left + pw / 2}" y="{h - 26}" text-anchor="middle">concurrent connections</text>'
    )
    out.append(
        f'<text x="18" y="{top + ph / 2}" text-anchor="middle" '
        f'transform="rotate(-90 18 {top + ph / 2})">p99 latency (ms)</text>'
    )
    for i, label in enumerate(labels):
        color = COLORS[i % len(COLORS)]
        series = sorted(
            (p["concurrency"], p["p99_us"] / 1e3) for p in points if p["label"] == label
        )
        path = " ".join(f"{px(c):.1f},{py(v):.1f}" for c, v in series)
        out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for c, v in series:
            out.append(
                f'<circle cx="{px(c):.1f}" cy="{py(v):.1f}" r="3.5" fill="{color}">'
                f"<title>{esc(label)}, {c} connections: p99 {v:.3f} ms</title></circle>"
            )
        ly = top + 14 + i * 20
        lx = left + pw + 16
        out.append(
            f'<line x1="{lx}" y1="{ly - 4}" x2="{lx + 22}" y2="{ly - 4}" stroke="{color}" '
            'stroke-width="2"/>'
        )
        out.append(f'<text x="{lx + 28}" y="{ly}">{esc(label)}</text>')
    out.append("</svg>")
    with open(args.out, "w") as f:
        f.write("\n".join(out) + "\n")
    print(f"  plot: {os.path.relpath(args.out)}")


def fmt_ms(v):
    return f"{v:g}"


def esc(text):
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def scale(args):
    load = read_runs(args.load)[0]
    runs = read_runs(args.runs)
    s = summarize("vaultd unseal", runs)
    out = {
        "machine": machine(args.fsync_dir),
        "tokens": load["tokens"],
        "tenants": load["tenants"],
        "load": {
            "secs": load["setup"]["secs"],
            "tokens_per_sec": load["setup"]["tokens_per_sec"],
            "daemon_vm_hwm_mib": load["daemon"]["vm_hwm_kib"] / 1024,
            "daemon_vm_rss_mib": load["daemon"]["vm_rss_kib"] / 1024,
        },
        "restart_to_serving_ms": median([r["start_to_serving_ms"] for r in runs]),
        "each_restart_to_serving_ms": [round(r["start_to_serving_ms"], 1) for r in runs],
        "unseal": s,
        "daemon_vm_hwm_mib": median([r["daemon"]["vm_hwm_kib"] / 1024 for r in runs]),
        "daemon_vm_rss_mib": median([r["daemon"]["vm_rss_kib"] / 1024 for r in runs]),
        "runs": runs,
        "load_run": load,
    }
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    m = out["machine"]
    print(
        f"\n{m['nproc']} cores, {m['cpu']}; load average now {m['loadavg'][0]}; "
        f"8 KiB write + fdatasync {m.get('fdatasync_us', '?')} us"
    )
    print(f"scale: {out['tokens']} tokens in {out['tenants']} tenants")
    print(
        f"  load       {out['load']['secs']:.0f} s ({out['load']['tokens_per_sec']:.0f} tokens/s, "
        f"{load['setup']['concurrency']} connections); "
        f"daemon peak RSS {out['load']['daemon_vm_hwm_mib']:.1f} MiB"
    )
    print(
        f"  restart    {out['restart_to_serving_ms']:.1f} ms to unsealed and serving "
        f"(median of {len(runs)}: {out['each_restart_to_serving_ms']})"
    )
    print(
        f"  unseal     {s['ops_per_sec']:.0f} ops/s, p50 {s['p50_us'] / 1e3:.3f} ms, "
        f"p99 {s['p99_us'] / 1e3:.3f} ms ({s['concurrency']} connections; each run "
        f"{s['each_ops_per_sec']})"
    )
    print(
        f"  cpu        daemon {fmt_or_dash(s['daemon_cpu_us_per_op'], '.1f')} us/op, "
        f"{fmt_or_dash(s['daemon_cores'], '.2f')} cores (medians; each run "
        f"{s['each_daemon_cpu_us_per_op']})"
    )
    print(
        f"  memory     after the unseal run: peak RSS (VmHWM) {out['daemon_vm_hwm_mib']:.1f} MiB, "
        f"RSS {out['daemon_vm_rss_mib']:.1f} MiB (medians)"
    )
    print(f"  written: {os.path.relpath(args.out)}")


def soak(args):
    lines = read_runs(args.samples)
    config = next(l for l in lines if l["type"] == "config")
    samples = [l for l in lines if l["type"] == "sample"]
    run = next((l["report"] for l in lines if l["type"] == "run"), {})
    first, last = samples[0], samples[-1]
    # RSS once the daemon has settled: at 5 min, or a quarter into a run shorter than 20 min.
    settle_s = min(300, config["duration_s"] / 4)
    ref = next((s for s in samples if s["t_s"] >= settle_s), last)
    rss_change = (last["rss_kib"] - ref["rss_kib"]) / ref["rss_kib"] * 100
    d_bytes = (
        last["data_bytes"] - first["data_bytes"]
        if last["data_bytes"] is not None and first["data_bytes"] is not None
        else None
    )
    d_ops = last["ops"] - first["ops"]
    d_seq = (
        last["audit_seq"] - first["audit_seq"]
        if last["audit_seq"] is not None and first["audit_seq"] is not None
        else None
    )
    entry_bytes = audit_entry_sizes(args.entries)
    out = {
        "type": "summary",
        "duration_s": last["t_s"] - first["t_s"],
        "samples": len(samples),
        "rate": config["rate"],
        "ops": d_ops,
        "ops_per_sec": d_ops / (last["t_s"] - first["t_s"]) if last["t_s"] > first["t_s"] else None,
        "errors": last["errors"],
        "rss_settled_t_s": ref["t_s"],
        "rss_settled_kib": ref["rss_kib"],
        "rss_end_kib": last["rss_kib"],
        "rss_change_pct": round(rss_change, 2),
        "rss_max_kib": max(s["rss_kib"] for s in samples),
        # The band RSS moves in once settled (sled frees its I/O buffers in batches).
        "rss_settled_min_kib": min(s["rss_kib"] for s in samples if s["t_s"] >= ref["t_s"]),
        "rss_settled_max_kib": max(s["rss_kib"] for s in samples if s["t_s"] >= ref["t_s"]),
        "fds_first": first["fds"],
        "fds_last": last["fds"],
        "fds_max": max(s["fds"] for s in samples),
        "data_bytes_first": first["data_bytes"],
        "data_bytes_last": last["data_bytes"],
        "data_bytes_per_op": d_bytes / d_ops if d_ops and d_bytes is not None else None,
        "audit_entries": d_seq,
        "data_bytes_per_audit_entry": d_bytes / d_seq if d_seq and d_bytes is not None else None,
        "audit_entry_mean_bytes": statistics.mean(entry_bytes) if entry_bytes else None,
        "audit_entries_sized": len(entry_bytes),
        "data_bytes_per_op_over_entry": None,
        "daemon_cpu_us_per_op": run.get("daemon_cpu_us_per_op"),
        "daemon_cores": run.get("daemon_cores"),
    }
    if out["data_bytes_per_op"] is not None and out["audit_entry_mean_bytes"]:
        out["data_bytes_per_op_over_entry"] = out["data_bytes_per_op"] / out["audit_entry_mean_bytes"]
    with open(args.samples, "a") as f:
        f.write(json.dumps(out) + "\n")
    mib = 1024
    print(
        f"\nsoak: {out['duration_s']:.0f} s of mix 90/10 at {config['rate']} ops/s "
        f"(peak {fmt_or_dash(config['peak_ops_per_sec'], '.0f')} x {config['fraction']}), "
        f"{config['concurrency']} connections, {len(samples)} samples"
    )
    if config.get("peak_daemon_cpu_us_per_op"):
        print(f"  peak       daemon CPU {config['peak_daemon_cpu_us_per_op']:.1f} us/op")
    print(
        f"  ops        {d_ops} ({fmt_or_dash(out['ops_per_sec'], '.0f')}/s), "
        f"{out['errors']} errors; daemon CPU "
        f"{fmt_or_dash(out['daemon_cpu_us_per_op'], '.1f')} us/op, "
        f"{fmt_or_dash(out['daemon_cores'], '.2f')} cores"
    )
    print(
        f"  RSS        {ref['rss_kib'] / mib:.1f} MiB at {ref['t_s']:.0f} s, "
        f"{last['rss_kib'] / mib:.1f} MiB at the end ({rss_change:+.1f}%), "
        f"max {out['rss_max_kib'] / mib:.1f} MiB; from {ref['t_s']:.0f} s on between "
        f"{out['rss_settled_min_kib'] / mib:.1f} and {out['rss_settled_max_kib'] / mib:.1f} MiB"
    )
    print(f"  fds        first {first['fds']}, last {last['fds']}, max {out['fds_max']}")
    print(
        f"  disk       {mib_or_dash(first['data_bytes'])} -> {mib_or_dash(last['data_bytes'])} MiB: "
        f"{fmt_or_dash(out['data_bytes_per_op'], '.0f')} bytes per operation "
        f"({fmt_or_dash(out['data_bytes_per_audit_entry'], '.0f')} per audit entry, "
        f"{fmt_or_dash(d_seq, 'd')} entries)"
    )
    print(
        f"  audit      a stored entry is {fmt_or_dash(out['audit_entry_mean_bytes'], '.0f')} bytes "
        f"(mean of the last {len(entry_bytes)} token operations): the disk grew "
        f"{fmt_or_dash(out['data_bytes_per_op_over_entry'], '.2f')}x that per operation"
    )
    print(f"  written: {os.path.relpath(args.samples)}")


def mib_or_dash(n):
    return "-" if n is None else f"{n / 2**20:.1f}"


def audit_entry_sizes(path, last=100):
    """Bytes of the last `last` token.* entries in `vault-cli --json audit tail` output: the
    compact JSON the log stores and hashes (docs/audit-log.md), without the newline."""
    sizes = []
    with open(path, "rb") as f:
        for line in f:
            line = line.rstrip(b"\n")
            if line and json.loads(line).get("op", "").startswith("token."):
                sizes.append(len(line))
    return sizes[-last:]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    mc = sub.add_parser("machine")
    mc.add_argument("--fsync-dir", help="also measure write + fdatasync latency there")
    c = sub.add_parser("compare")
    c.add_argument("--runs", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--machine-before")
    c.add_argument("--machine-after")
    c.add_argument("--reference-read", default="vaultd unseal")
    c.add_argument("--reference-write", default="vaultd put")
    s = sub.add_parser("sweep")
    s.add_argument("--runs", required=True)
    s.add_argument("--out", required=True)
    pl = sub.add_parser("plot")
    pl.add_argument("--sweep", required=True)
    pl.add_argument("--out", required=True)
    sc = sub.add_parser("scale")
    sc.add_argument("--load", required=True)
    sc.add_argument("--runs", required=True)
    sc.add_argument("--out", required=True)
    sc.add_argument("--fsync-dir")
    so = sub.add_parser("soak")
    so.add_argument("--samples", required=True)
    so.add_argument("--entries", required=True)
    args = p.parse_args()
    if args.cmd == "machine":
        json.dump(machine(args.fsync_dir), sys.stdout)
        print()
    else:
        {"compare": compare, "sweep": sweep, "plot": plot, "scale": scale, "soak": soak}[
            args.cmd
        ](args)


if __name__ == "__main__":
    main()
