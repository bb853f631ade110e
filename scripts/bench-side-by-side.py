"""Summarises scripts/bench-side-by-side.sh's results: a markdown table (min / median / max
over the rounds) and PNG plots.

    bench-side-by-side.py RESULTS_DIR OUT_DIR ROUNDS "SERVERS" VERSIONS_FILE "SETTINGS"
"""
import json
import os
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

res, out, rounds, servers, versions, settings = sys.argv[1:7]
rounds = int(rounds)
servers = servers.split()


def load(server, scenario, r):
    path = f"{res}/{server}-{scenario}-{r}.json"
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


# (key, label, scenario, value of one run's report, format)
FIGURES = [
    ("chat", "closed-loop chat: delivered msgs/s", "chat",
     lambda d: d["rates"]["delivered_per_s"], "{:,.0f}"),
    ("chat_p50", "open-loop chat at RATE msgs/s: latency p50 (µs)", "chat-open",
     lambda d: d["latency"]["delivery"]["p50_us"], "{:,.0f}"),
    ("chat_p99", "open-loop chat at RATE msgs/s: latency p99 (µs)", "chat-open",
     lambda d: d["latency"]["delivery"]["p99_us"], "{:,.0f}"),
    ("send_lag", "open-loop chat: the load generator's own send lag p99 (µs)", "chat-open",
     lambda d: d["latency"]["send_lag"]["p99_us"], "{:,.0f}"),
    ("cpu_msg", "server CPU per message at RATE msgs/s (µs)", "chat-open",
     lambda d: d["server_cpu"]["server_cpu_us_per_message"], "{:,.1f}"),
    ("muc", "MUC: fan-out deliveries/s", "muc",
     lambda d: d["rates"]["deliveries_per_s"], "{:,.0f}"),
    ("muc_p99", "MUC: delivery latency p99 (µs)", "muc",
     lambda d: d["latency"]["delivery"]["p99_us"], "{:,.0f}"),
    ("cpu_muc", "MUC: server CPU per delivered copy (µs)", "muc",
     lambda d: d["server_cpu"]["server_cpu_us_per_delivery"], "{:,.2f}"),
    ("presence", "presence: status deliveries/s", "presence",
     lambda d: d["rates"]["deliveries_per_s"], "{:,.0f}"),
    ("offline", "offline: messages delivered at login /s", "offline",
     lambda d: d["rates"]["delivered_per_s"], "{:,.0f}"),
    ("logins", "logins/s (STARTTLS, SCRAM-SHA-1, bind, presence, close)", "login",
     lambda d: d["rates"]["logins_per_s"], "{:,.0f}"),
    ("cpu_login", "server CPU per login (ms)", "login",
     lambda d: d["server_cpu"]["server_cpu_us_per_login"] / 1000, "{:,.2f}"),
    ("reconnect", "reconnect churn: logins/s", "reconnect",
     lambda d: d["rates"]["logins_per_s"], "{:,.0f}"),
    ("cpu_reconnect", "reconnect churn: server CPU per close + login (ms)", "reconnect",
     lambda d: d["server_cpu"]["server_cpu_us_per_login"] / 1000, "{:,.2f}"),
    ("idle_kib", "idle memory per session (KiB, IDLE sessions)", "idle",
     lambda d: d["server_rss"]["kib_per_session"], "{:,.1f}"),
]
LOSSY = ["chat", "chat-open", "muc", "presence", "offline"]

settings_map = dict(kv.split("=", 1) for kv in settings.split())

# MUC_OCCUPANTS: the room sizes `muc` also ran with, one set of rows each.
for n in settings_map.get("MUC_OCCUPANTS", "none").split(","):
    if not n.isdigit():
        continue
    sc = f"muc-{n}"
    FIGURES += [
        (f"muc{n}", f"MUC, {n} occupants: fan-out deliveries/s", sc,
         lambda d: d["rates"]["deliveries_per_s"], "{:,.0f}"),
        (f"muc{n}_p99", f"MUC, {n} occupants: delivery latency p99 (µs)", sc,
         lambda d: d["latency"]["delivery"]["p99_us"], "{:,.0f}"),
        (f"cpu_muc{n}", f"MUC, {n} occupants: server CPU per delivered copy (µs)", sc,
         lambda d: d["server_cpu"]["server_cpu_us_per_delivery"], "{:,.2f}"),
    ]
    LOSSY.append(sc)
# SCENARIOS: only what ran counts as missing.
ran = settings_map.get("SCENARIOS", "").split(",")
if ran != [""]:
    LOSSY = [sc for sc in LOSSY if sc in ran or (sc.startswith("muc-") and "muc" in ran)]


def label(text):
    return text.replace("RATE", settings_map.get("RATE", "?")).replace(
        "IDLE", settings_map.get("IDLE_SESSIONS", "?"))


def values(server, scenario, fn):
    vals = []
    for r in range(1, rounds + 1):
        d = load(server, scenario, r)
        if d is None:
            continue
        try:
            v = fn(d)
        except (KeyError, TypeError):
            v = None
        if v is not None:
            vals.append(float(v))
    return vals


data = {}
for key, text, scenario, fn, fmt in FIGURES:
    data[key] = {s: values(s, scenario, fn) for s in servers}
lost = {}
problems = []
for s in servers:
    per_round = []
    for r in range(1, rounds + 1):
        n = 0
        for sc in LOSSY:
            d = load(s, sc, r)
            if d is None:
                problems.append(f"{s} {sc} round {r}: no result")
                continue
            c = d["counts"]
            n += c.get("lost", 0)
            for bad in ("incomplete_receivers", "failed", "sessions_lost"):
                if c.get(bad, 0):
                    problems.append(f"{s} {sc} round {r}: {bad} {c[bad]}")
            for e, k in d.get("errors", {}).items():
                problems.append(f"{s} {sc} round {r}: error ×{k}: {e}")
        per_round.append(n)
    lost[s] = per_round


def cell(vals, fmt):
    if not vals:
        return "–"
    lo, med, hi = min(vals), statistics.median(vals), max(vals)
    return f"{fmt.format(lo)} / **{fmt.format(med)}** / {fmt.format(hi)}"


lines = ["| figure (min / **median** / max over rounds) | " + " | ".join(servers) + " |",
         "| --- |" + " --- |" * len(servers)]
for key, text, scenario, fn, fmt in FIGURES:
    lines.append(f"| {label(text)} | " + " | ".join(cell(data[key][s], fmt) for s in servers) + " |")
lines.append("| messages lost (chat, MUC, presence, offline; per round) | "
             + " | ".join(", ".join(str(x) for x in lost[s]) for s in servers) + " |")
table = "\n".join(lines)

with open(versions) as f:
    ver = f.read().strip()
md = [
    "# Side by side: confabd, Prosody, ejabberd",
    "",
    "Made by `scripts/bench-side-by-side.sh` (see docs/performance.md). "
    f"{rounds} rounds, servers alternating within each round.",
    "",
    "```",
    ver,
    settings,
    "```",
    "",
    table,
    "",
    "![throughput](throughput.png) ![logins](logins.png)",
    "![latency](latency.png) ![cpu](cpu.png) ![memory](memory.png)",
    "",
]
if problems:
    md += ["Problems seen in the runs:", ""] + [f"- {p}" for p in sorted(set(problems))[:40]] + [""]
with open(f"{out}/side-by-side.md", "w") as f:
    f.write("\n".join(md))
print(table)
if problems:
    print("\n".join(sorted(set(problems))[:40]), file=sys.stderr)

SHORT = {"chat": "1:1 chat", "muc": "MUC fan-out", "presence": "presence",
         "offline": "offline at login", "logins": "login", "reconnect": "reconnect",
         "idle_kib": "idle session"}
TEXT = {f[0]: f[1] for f in FIGURES}
COLORS = {"confabd": "#2b7bba", "prosody": "#8bb84a", "ejabberd": "#e08a2c"}


def bars(path, title, keys, ylabel, log=False):
    fig, ax = plt.subplots(figsize=(max(4, 2.2 * len(keys)), 3.6), dpi=100)
    width = 0.8 / len(servers)
    for i, s in enumerate(servers):
        meds, lo, hi = [], [], []
        for k in keys:
            v = data[k][s]
            m = statistics.median(v) if v else 0
            meds.append(m)
            lo.append(m - min(v) if v else 0)
            hi.append(max(v) - m if v else 0)
        xs = [j + (i - (len(servers) - 1) / 2) * width for j in range(len(keys))]
        ax.bar(xs, meds, width, yerr=[lo, hi], capsize=3, label=s,
               color=COLORS.get(s, None))
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels([SHORT.get(k, k) for k in keys], fontsize=8)
    if log:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


bars(f"{out}/throughput.png", "Throughput (median, min–max over rounds)",
     ["chat", "muc", "presence", "offline"], "deliveries per second", log=True)
bars(f"{out}/logins.png", "Logins per second", ["logins", "reconnect"], "logins/s")
bars(f"{out}/memory.png", "Idle memory per session", ["idle_kib"], "KiB")

# CPU: two different units, two panels.
fig, axes = plt.subplots(1, 2, figsize=(8, 3.4), dpi=100)
for ax, key, unit in ((axes[0], "cpu_msg", "µs per message"), (axes[1], "cpu_login", "ms per login")):
    meds = [statistics.median(data[key][s]) if data[key][s] else 0 for s in servers]
    ax.bar(servers, meds, color=[COLORS.get(s) for s in servers])
    ax.set_ylabel(unit)
    ax.set_title(label(TEXT[key]), fontsize=8)
    ax.grid(axis="y", alpha=0.3)
fig.tight_layout()
fig.savefig(f"{out}/cpu.png")
plt.close(fig)

# Open-loop latency percentiles (median over rounds of each percentile).
fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
pcts = [("p50_us", "p50"), ("p90_us", "p90"), ("p99_us", "p99"), ("p999_us", "p99.9"), ("max_us", "max")]
for s in servers:
    ys = []
    for field, _ in pcts:
        v = values(s, "chat-open", lambda d, f=field: d["latency"]["delivery"][f])
        ys.append(statistics.median(v) if v else float("nan"))
    ax.plot([p[1] for p in pcts], ys, marker="o", label=s, color=COLORS.get(s))
ax.set_yscale("log")
ax.set_ylabel("µs from the intended send time")
ax.set_title(label("Open-loop chat at RATE msgs/s: delivery latency"), fontsize=10)
ax.legend(fontsize=8)
ax.grid(alpha=0.3)
fig.tight_layout()
fig.savefig(f"{out}/latency.png")
plt.close(fig)
