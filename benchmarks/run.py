"""``make bench``: every benchmark, its figures next to its target, JSON + PNG plots.

    python -m benchmarks.run [--quick] [--out benchmarks/results] [--no-storm]

``--quick`` uses tiny sizes (the smoke test runs it); the full run takes a few minutes
on a 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import time
from pathlib import Path

from . import advise, decisions, gcpause, reclaim, utilisation, waitline

TARGETS = {
    "decide_p99_ms_at_max": 1.0,
    "speedup_vs_naive": 100.0,
    "growth_500_to_max": 1.5,
    "form_ms_at_max": 10.0,
    "storm_stall_ms": 50.0,
    "fallback_vs_optimum": 0.95,
    "advised_vs_optimum": 1.0,
    "storm_stall_ratio_vs_kubespawner": 1.05,
    "storm_cpu_ratio_vs_kubespawner": 1.05,
}


def _line(name, value, target, ok, unit=""):
    mark = "met" if ok else "MISSED"
    print(f"  {name:<44} {value:>12.3f}{unit:<4} target {target}{unit}  [{mark}]")


def run(quick: bool, out: Path, storm: bool) -> dict:
    sizes = [20, 50] if quick else [100, 500, 1000, 5000]
    samples = 30 if quick else 400
    results: dict = {"machine": platform.platform(), "python": platform.python_version()}
    results["sizes"] = []
    for n in sizes:
        t = time.perf_counter()
        naive = 2 if quick else (3 if n >= 5000 else 5)
        r = decisions.bench_size(n, samples=samples, naive_samples=naive)
        r["bench_s"] = time.perf_counter() - t
        results["sizes"].append(r)
        print(
            f"{n:>5} nodes: decide median {r['decide_median_us']:.0f} us, p99 (worst tier) "
            f"{r['decide_p99_us_worst_tier']:.0f} us wall / {r['decide_cpu_p99_us_worst_tier']:.0f}"
            f" us CPU; naive {r['naive']['median_us'] / 1000:.0f} ms; form "
            f"{r['form']['median_us'] / 1000:.2f} ms "
            f"(cached {r['form_cached']['median_us']:.0f} us); {r['users']} users, the "
            f"busiest ({r['busiest_user_servers']} servers) decided in "
            f"{r['decide_busiest_user']['median_us']:.0f} us",
            flush=True,
        )
    big = sizes[-1]
    results["events"] = decisions.bench_events(
        sizes[-2] if quick else 1000, 2000 if quick else 20000
    )
    results["memory"] = decisions.bench_memory(big)
    t = time.perf_counter()
    print(f"decisions with the garbage collector, {big} nodes:", flush=True)
    results["gc"] = gcpause.bench_gc(big, steps=1000 if quick else 20_000)
    results["gc"]["bench_s"] = time.perf_counter() - t
    results["utilisation"] = [
        utilisation.run(n=40 if quick else n, seed=3) for n in ([40] if quick else [100, 160])
    ]
    results["advise"] = advise.run(quick)
    results["waitline"] = waitline.run(quick)
    results["reclaim"] = reclaim.run(quick)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))  # kept if the storm fails
    if storm:
        results["storm"], results["storm_pair"] = _storm(quick)
    results["targets"] = _targets(results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    _plots(results, out)
    return results


def _storm(quick: bool) -> tuple[dict, dict]:
    """The storm beside plain KubeSpawner: (mig-spawner's storm of every user, the pair)."""
    from .stormpair import report, run_pair

    pair = asyncio.run(run_pair(20 if quick else 300, n_nodes=6 if quick else 24))
    report(pair)
    return pair["mig_spawner"], pair


def storm_only(out: Path) -> dict:
    """Re-run the storm alone into an existing results.json (the rest is kept)."""
    results = json.loads((out / "results.json").read_text())
    results["storm"], results["storm_pair"] = _storm(quick=False)
    results["targets"] = _targets(results)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    _plots(results, out)
    return results


def _targets(results) -> dict:
    sizes = {r["nodes"]: r for r in results["sizes"]}
    big = sizes[max(sizes)]
    mid = sizes.get(500, sizes[min(sizes)])
    t = {
        "decide_p99_ms_at_max": big["decide_p99_us_worst_tier"] / 1000,
        "decide_cpu_p99_ms_at_max": big["decide_cpu_p99_us_worst_tier"] / 1000,
        "speedup_vs_naive": big["naive"]["median_us"] / big["decide_median_us"],
        "growth_500_to_max": big["decide_median_us"] / mid["decide_median_us"],
        "form_ms_at_max": big["form"]["median_us"] / 1000,
        "fallback_vs_optimum": min(
            u["modes"]["fallback"]["vs_optimum"] for u in results["utilisation"]
        ),
    }
    if "advise" in results:
        t["advised_vs_optimum"] = min(
            a["advised_served"] / a["optimum_current_layout"] for a in results["advise"]["seeded"]
        )
    if "storm" in results:
        t["storm_stall_ms"] = results["storm"]["longest_loop_stall_ms"] or 0.0
    if "storm_pair" in results:
        ratios = results["storm_pair"]["ratios_mig_over_kubespawner"]
        t["storm_stall_ratio_vs_kubespawner"] = ratios["longest_loop_stall_ms"]
        t["storm_cpu_ratio_vs_kubespawner"] = ratios["hub_cpu_s"]
        t["storm_spawns_per_s_ratio_vs_kubespawner"] = ratios["spawns_per_s"]
    if "gc" in results:
        t["gc_decide_cpu_p99_ratio_on_vs_off"] = results["gc"]["verdict"][
            "decide_cpu_p99_ratio_on_vs_off"
        ]
        t["gc_gen2_max_ms"] = results["gc"]["verdict"]["gen2_max_ms"]
    print("targets:")
    _line(
        "decide p99, worst tier, largest cluster",
        t["decide_p99_ms_at_max"],
        1.0,
        t["decide_p99_ms_at_max"] < 1,
        " ms",
    )
    _line(
        "  same, CPU time of the deciding thread",
        t["decide_cpu_p99_ms_at_max"],
        1.0,
        t["decide_cpu_p99_ms_at_max"] < 1,
        " ms",
    )
    _line(
        "naive rebuild-then-decide / decide (median)",
        t["speedup_vs_naive"],
        100,
        t["speedup_vs_naive"] >= 100,
        "x",
    )
    _line(
        "growth of the median 500 -> largest",
        t["growth_500_to_max"],
        1.5,
        t["growth_500_to_max"] <= 1.5,
        "x",
    )
    _line(
        "form render per user (after a change)",
        t["form_ms_at_max"],
        10,
        t["form_ms_at_max"] < 10,
        " ms",
    )
    if "storm_stall_ms" in t:
        s = results["storm"]
        _line(
            "storm: longest event-loop stall",
            t["storm_stall_ms"],
            50,
            t["storm_stall_ms"] < 50,
            " ms",
        )
        print(
            f"  storm: double-booked {s['double_booked_slices']}, quota overshoot "
            f"{s['quota_overshoot_compute_slices']} (must be 0); {s['spawns_per_s']:.2f} spawns/s"
        )
    if "storm_stall_ratio_vs_kubespawner" in t:
        for key, name in (
            ("storm_stall_ratio_vs_kubespawner", "storm stall, mig-spawner / KubeSpawner"),
            ("storm_cpu_ratio_vs_kubespawner", "storm hub CPU, mig-spawner / KubeSpawner"),
        ):
            _line(name, t[key], 1.05, t[key] <= 1.05, "x")
        print(
            "  storm: mig-spawner's share of the hub's busy loop "
            f"{results['storm_pair']['mig_spawner_share_of_busy_loop'] * 100:.1f} %; spawns/s "
            f"ratio {t['storm_spawns_per_s_ratio_vs_kubespawner']:.2f}"
        )
    if "gc" in results:
        v = results["gc"]["verdict"]
        print(
            f"  gc: decide CPU p99 with / without the collector "
            f"{v['decide_cpu_p99_ratio_on_vs_off']:.2f}x; longest gen-2 pause "
            f"{v['gen2_max_ms']:.0f} ms ({v.get('frozen_gen2_max_ms', 0):.0f} ms after "
            f"gc.freeze()); pauses dominate the p99: {v['pauses_dominate_p99']}"
        )
    if "waitline" in results:
        for tr in results["waitline"]["traces"]:
            line, refuse, eta = tr["line"], tr["refuse"], tr["line"]["eta"]
            err = eta["median_abs_error_min"]
            print(
                f"  line ({tr['requests']} requests): served within 10 min "
                f"{line['served_within_10_min_pct']:.1f} % vs "
                f"{refuse['served_within_10_min_pct']:.1f} % refusing; served "
                f"{line['served_pct']:.1f} % vs {refuse['served_pct']:.1f} %;"
                + (
                    f" ETA median error {err:.1f} min ({eta['median_abs_error_pct']:.0f} %)"
                    if err is not None
                    else " no ETA compared"
                )
                + " (no target)"
            )
    if "reclaim" in results:
        r = results["reclaim"]
        line, both, c = r["line"], r["reclaim"], r["checks"]
        print(
            f"  line + reclaim ({r['requests']} requests, {r['with_tail']} idle tails): served "
            f"within 10 min {both['served_within_10_min_pct']:.1f} % vs "
            f"{line['served_within_10_min_pct']:.1f} % line only; served "
            f"{both['served_pct']:.1f} % vs {line['served_pct']:.1f} %; {both['reclaimed']} "
            f"reclaimed, {both['gpu_hours_given_back']:.1f} GPU-h given back; stops for a place "
            f"waiting {c['for_a_place_waiting']}/{c['stops']}, after the grace "
            f"{c['at_or_after_grace']}/{c['stops']} (no target)"
        )
    _line(
        "fallback admissions / optimum's",
        t["fallback_vs_optimum"],
        0.95,
        t["fallback_vs_optimum"] >= 0.95,
    )
    if "advised_vs_optimum" in t:
        _line(
            "advised layout served / fixed layout's optimum",
            t["advised_vs_optimum"],
            1.0,
            t["advised_vs_optimum"] >= 1.0,
        )
    return t


def _plots(results, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = results["sizes"]
    n = [r["nodes"] for r in sizes]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for tier in sizes[0]["decide"]:
        ax.plot(
            n,
            [r["decide"][tier]["median_us"] for r in sizes],
            marker="o",
            label=f"decide {tier} (median)",
        )
    ax.plot(
        n,
        [r["naive"]["median_us"] for r in sizes],
        marker="s",
        color="k",
        label="naive rebuild+decide",
    )
    ax.plot(n, [r["form"]["median_us"] for r in sizes], marker="^", ls="--", label="form, one user")
    ax.axhline(1000, color="r", lw=0.8, ls=":", label="1 ms target (p99)")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="nodes (8 GPUs each, ~10 GPU pods a node)",
        ylabel="microseconds",
    )
    ax.legend(fontsize=7)
    ax.set_title("Decision latency vs cluster size")
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 4))
    labels, values = [], []
    for u in results["utilisation"]:
        req = u["trace"]["requests"]
        for mode, m in u["modes"].items():
            labels.append(f"{mode}\n{req} req")
            values.append(m["admitted"])
        labels.append(f"optimum\n{req} req")
        values.append(u["optimum"]["admitted"])
        labels.append(f"optimum +\nquotas, {req}")
        values.append(u["optimum_with_quotas"]["admitted"])
    colours = ["#999", "#4a7", "#47a", "#222", "#225"] * len(results["utilisation"])
    ax.bar(range(len(values)), values, color=colours)
    ax.set_xticks(range(len(values)), labels, fontsize=7)
    ax.set_ylabel("sessions admitted")
    ax.set_title("Seeded trace: admissions by policy vs the exact optimum")
    fig.tight_layout()
    fig.savefig(out / "utilisation.png", dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-storm", action="store_true")
    parser.add_argument("--storm-only", action="store_true", help="re-run the storm alone")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    if args.storm_only:
        storm_only(Path(args.out))
    else:
        run(args.quick, Path(args.out), storm=not args.no_storm)


if __name__ == "__main__":
    main()
