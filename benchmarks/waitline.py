"""The waiting line on the seeded utilisation trace, the ETA's error, and the pass's cost.

1. The utilisation benchmark's seeded trace (``utilisation.trace``: uniform arrivals,
   exponential sessions, 55 % 1g / 20 % 2g / 17 % 3g / 8 % 7g, two teams) on its 4-H100
   cluster, with one time unit of the trace taken as 5 minutes (sessions of 1 h on
   average, a day of 8 h 20 min). Every arrival and every freed slice goes through the
   real decision (``admission.admit``, the tiers' fallback chains), under:

   - ``refuse``: a full tier answers at once (the hub before issue 20);
   - ``retry``: refused, and the user clicks again whenever a server ends, for up to
     ``MAX_WAIT`` (``core.replay``'s ``patience_s``: arrival order, no fairness rule);
   - ``line``: the waiting line, the real ``core.waitline.Line`` (the team with fewer
     servers running first, FIFO within a team), ``max_wait`` = ``MAX_WAIT``. A freed
     slice, an arrival and a place leaving run one admission pass (below).

   Printed: the share of requests served within 10 minutes, the share served at all, the
   mean wait of those served; for the line, the ETA each waiting place was given when it
   joined (``core.eta.eta_seconds`` with its position, the ages of the running servers
   holding slices its tier could use, and its tier's history of session lengths), against
   the wait it then had: the median absolute error in minutes and in per cent of the
   actual wait. The history starts with the previous day's sessions (the same generator,
   seed + 1) and grows with every session that ends, as the hub's does.

2. The cost of one admission pass per freed slice with 1,000 places waiting (4 tiers, 4
   teams) on the same cluster, full: one running server ends, the pass admits the place
   the slice goes to; median and p99 in microseconds, alone and with every place's ETA
   recomputed (what the progress lines need after a change). Plain KubeSpawner has no
   waiting line: a spawn on a full cluster leaves its pod Pending until ``start_timeout``,
   so there is no peer figure to print beside it.

The admission pass here (:func:`admission_pass`) walks the real ``Line`` with the real
``admission.admit`` as ``hub/waiting.py``'s pass does (line-core's branch), without the
hub around it (no spawners, futures, metrics or progress events).

    python -m benchmarks.waitline [--quick]
"""

from __future__ import annotations

import argparse
import heapq
import random
import statistics
import time

from mig_spawner.core import admission
from mig_spawner.core.admission import SpawnRequest, chain_rows
from mig_spawner.core.eta import eta_seconds
from mig_spawner.core.policy import build_policy
from mig_spawner.core.replay import Request, replay
from mig_spawner.core.waitline import Line, Place, add_history

from . import utilisation

UNIT = 300.0  # seconds per time unit of utilisation.trace
MAX_WAIT = 1800.0  # the line's max_wait, and the retrying user's patience
SERVED_WITHIN = 600.0
OTHER_MAX_WAITS = (600.0, 3600.0)  # the line again with these max_wait, for the trade-off
DEPART, ARRIVE, EXPIRE = 0, 1, 2  # at one instant: slices free first, then arrivals


def requests(n: int, seed: int) -> list[dict]:
    return [
        {**r, "start": r["start"] * UNIT, "end": r["end"] * UNIT}
        for r in utilisation.trace(n, seed)
    ]


def usable_profiles(policy, state) -> dict[str, frozenset[str]]:
    """Tier -> the profiles the decision may grant it (its chain within its fallback rule)."""
    out = {}
    for slug, tier in policy.tiers.items():
        out[slug] = frozenset(
            row.slice_type.profile
            for row in chain_rows(tier, state)
            if row.step == 0
            or (
                tier.fallback
                and (tier.max_fallback_steps is None or row.step <= tier.max_fallback_steps)
            )
        )
    return out


def admission_pass(line: Line, state, policy, running: dict[str, int]) -> tuple[list, list]:
    """One pass as ``hub/waiting.py``'s ``WaitingLine.admission_pass`` makes it: the places
    in line order (the running counts as the pass starts), each decided by
    ``admission.admit``; a capacity refusal ends its tier's turn in this pass (the pass
    only takes slices: the places behind would find the chain full too); admitted, or
    refused for anything but capacity (a quota checked again now), the place leaves the
    line. Returns ([(place, decision) admitted], [place refused])."""
    line.set_running(running)
    full: set[str] = set()
    admitted, refused = [], []
    for place in line.order():
        if place.tier in full:
            continue
        request = SpawnRequest(place.user, place.tier, place.groups, place.team or None)
        d = admission.admit(request, policy, state, pod_key=place.key)
        if d.admitted:
            line.remove(place.key)
            running[place.team] = running.get(place.team, 0) + 1
            admitted.append((place, d))
        elif d.code == admission.CAPACITY:
            full.add(place.tier)
        else:
            line.remove(place.key)
            refused.append(place)
    return admitted, refused


def arrive(line: Line, state, policy, key: str, r: dict, now: float, max_wait: float) -> bool:
    """A request of the trace arrives: it takes a place in line, and the admission pass
    that follows starts it at once if its tier has a free slice. False: refused at once
    for anything but capacity (not in line). ``r["server"]``: its server's name, if any."""
    request = SpawnRequest(r["user"], r["tier"], (r["team"],), r["team"])
    d = admission.decide(request, policy, state)
    if not d.admitted and d.code != admission.CAPACITY:
        return False
    groups = (r["team"],)
    server = r.get("server", "")
    line.add(Place(key, r["user"], server, r["tier"], r["team"], groups, now, now + max_wait))
    return True


def _prior_history(n: int, seed: int) -> dict[str, list[float]]:
    history: dict[str, list[float]] = {}
    for r in requests(n, seed):
        add_history(history, r["tier"], r["end"] - r["start"])
    return history


def replay_line(reqs: list[dict], *, max_wait: float, prior_seed: int) -> dict:
    state = utilisation.cluster_state()
    policy = utilisation.policy("fallback")
    usable = usable_profiles(policy, state)
    history = _prior_history(len(reqs), prior_seed)
    line = Line()
    running: dict[str, int] = {}
    holding: dict[str, tuple[float, str]] = {}  # key -> (started at, granted profile)
    by_key = {f"jhub/{r['id']}": r for r in reqs}
    events = [(r["start"], ARRIVE, f"jhub/{r['id']}") for r in reqs]
    heapq.heapify(events)
    waits: dict[str, float] = {}
    etas: dict[str, float | None] = {}
    refused = timed_out = 0

    def admit_waiting(now: float) -> None:
        nonlocal refused
        admitted, refused_now = admission_pass(line, state, policy, running)
        refused += len(refused_now)  # none on this trace: its teams have no quota
        for place, d in admitted:
            r = by_key[place.key]
            waits[place.key] = now - place.requested_at
            holding[place.key] = (now, d.granted.profile)
            heapq.heappush(events, (now + r["end"] - r["start"], DEPART, place.key))

    while events:
        now, kind, key = heapq.heappop(events)
        r = by_key[key]
        if kind == DEPART:
            state.forget(key)
            started, _ = holding.pop(key)
            running[r["team"]] -= 1
            add_history(history, r["tier"], now - started)
        elif kind == EXPIRE:
            if line.remove(key) is None:
                continue  # admitted before its deadline
            timed_out += 1
        elif not arrive(line, state, policy, key, r, now, max_wait):
            refused += 1  # quota and the like: answered at once, as today
            continue
        admit_waiting(now)
        if kind == ARRIVE and key in line:  # it waits: the ETA it is told now
            ages = [now - t for t, prof in holding.values() if prof in usable[r["tier"]]]
            etas[key] = eta_seconds(line.position(key), ages, history.get(r["tier"], []))
            heapq.heappush(events, (now + max_wait, EXPIRE, key))
    return {
        **_served(len(reqs), list(waits.values())),
        "longest_wait_min": max(waits.values(), default=0.0) / 60,
        "refused_at_once": refused,
        "timed_out": timed_out,
        "eta": {
            **_eta_error(etas, waits),
            # told it would start within max_wait, then timed out: the ETA's broken promises
            "timed_out_with_eta_within_max_wait": sum(
                1 for k, e in etas.items() if k not in waits and e is not None and e <= max_wait
            ),
        },
    }


def _served(n: int, waits: list[float]) -> dict:
    return {
        "requests": n,
        "served": len(waits),
        "served_pct": 100 * len(waits) / n,
        "served_within_10_min_pct": 100 * sum(w <= SERVED_WITHIN for w in waits) / n,
        "mean_wait_min": statistics.fmean(waits) / 60 if waits else 0.0,
    }


def _eta_error(etas: dict[str, float | None], waits: dict[str, float]) -> dict:
    pairs = [(etas[k], waits[k]) for k in etas if etas[k] is not None and k in waits]
    abs_err = [abs(e - w) for e, w in pairs]
    rel = [abs(e - w) / w for e, w in pairs if w > 0]
    return {
        "waited": len(etas),
        "unknown": sum(e is None for e in etas.values()),
        "compared": len(pairs),  # known ETA and served (a timed-out wait has no end)
        "median_abs_error_min": statistics.median(abs_err) / 60 if abs_err else None,
        "median_abs_error_pct": 100 * statistics.median(rel) if rel else None,
        "median_signed_error_min": (
            statistics.median(e - w for e, w in pairs) / 60 if pairs else None
        ),
        "median_actual_wait_min": statistics.median(w for _, w in pairs) / 60 if pairs else None,
    }


def replay_refuse(reqs: list[dict], *, patience: float) -> dict:
    """Through ``core.replay`` (``patience`` 0: refused at once; else retrying users)."""
    state = utilisation.cluster_state()
    policy = utilisation.policy("fallback")
    result = replay(
        state,
        policy,
        [
            Request(r["id"], r["start"], r["end"] - r["start"], r["tier"], r["user"], r["team"])
            for r in reqs
        ],
        patience_s=patience,
    )
    return _served(len(reqs), result.waits)


def trace_run(n: int, seed: int = 3) -> dict:
    reqs = requests(n, seed)
    return {
        "requests": n,
        "seed": seed,
        "refuse": replay_refuse(reqs, patience=0.0),
        "retry": replay_refuse(reqs, patience=MAX_WAIT),
        "line": replay_line(reqs, max_wait=MAX_WAIT, prior_seed=seed + 1),
        "line_max_wait": {
            int(w): replay_line(reqs, max_wait=w, prior_seed=seed + 1) for w in OTHER_MAX_WAITS
        },
    }


# --------------------------------------------------------------------------- pass cost


def pass_cost(waiting: int = 1000, repeats: int = 300, seed: int = 5) -> dict:
    """One freed slice, one admission pass, ``waiting`` places in line, the cluster full."""
    rng = random.Random(seed)
    state = utilisation.cluster_state()
    teams = ("vision", "nlp", "bio", "chem")
    policy = build_policy(tiers=utilisation.TIERS, team_quotas={t: {} for t in teams})
    usable = usable_profiles(policy, state)
    running: dict[str, int] = {}
    holding: dict[str, tuple[SpawnRequest, float, str]] = {}
    tiers = list(utilisation.TIERS)
    while True:  # fill the cluster: one server after another until no tier starts
        for tier in tiers:
            team = teams[len(holding) % len(teams)]
            request = SpawnRequest(f"r{len(holding)}", tier, (team,), team)
            key = f"jhub/run-{len(holding)}"
            d = admission.admit(request, policy, state, pod_key=key)
            if d.admitted:
                running[team] = running.get(team, 0) + 1
                holding[key] = (request, rng.uniform(0, 7200), d.granted.profile)
                break
        else:
            break
    history = {t: [rng.expovariate(1 / 3600) for _ in range(500)] for t in tiers}
    line = Line(
        Place(
            f"jhub/w{i}",
            f"w{i}",
            "",
            rng.choices(tiers, weights=[55, 20, 17, 8])[0],
            team := rng.choice(teams),
            (team,),
            float(i),
            1e9,
        )
        for i in range(waiting)
    )
    keys = list(holding)
    alone, with_etas, admitted_per_pass = [], [], set()
    for i in range(2 * repeats):
        freed = rng.choice(keys)
        request, _, _ = holding[freed]
        t0 = time.perf_counter()
        state.forget(freed)
        running[request.team] -= 1
        admitted, _ = admission_pass(line, state, policy, running)
        if i % 2:  # every other pass also refreshes every waiting place's ETA
            ages = {t: [a for _, a, prof in holding.values() if prof in usable[t]] for t in tiers}
            for key, position in line.positions().items():
                tier = line.get(key).tier
                eta_seconds(position, ages[tier], history[tier])
        elapsed = time.perf_counter() - t0
        (with_etas if i % 2 else alone).append(elapsed * 1e6)
        admitted_per_pass.add(len(admitted))
        # put things back: the admitted place waits again, the freed server runs again
        for place, _ in admitted:
            state.forget(place.key)
            running[place.team] -= 1
            line.add(place)
        d = admission.admit(request, policy, state, pod_key=freed)
        assert d.admitted, d.message
        running[request.team] += 1
        shift = rng.uniform(30, 300)  # the servers age a little between two frees
        holding = {k: (r, a + shift, p) for k, (r, a, p) in holding.items()}
    return {
        "waiting": waiting,
        "running": len(holding),
        "repeats": repeats,
        "admitted_per_pass": sorted(admitted_per_pass),
        "pass_us": _dist(alone),
        "pass_and_etas_us": _dist(with_etas),
        "kubespawner": "no waiting line: a spawn on a full cluster stays Pending until "
        "start_timeout; no peer figure",
    }


def _dist(xs: list[float]) -> dict:
    xs = sorted(xs)
    return {"n": len(xs), "median": statistics.median(xs), "p99": xs[int(0.99 * (len(xs) - 1))]}


# --------------------------------------------------------------------------- report


def run(quick: bool = False) -> dict:
    out: dict = {"max_wait_s": MAX_WAIT, "unit_s": UNIT, "traces": []}
    for n in [40] if quick else [100, 160]:
        r = trace_run(n)
        out["traces"].append(r)
        print(f"waiting line, seeded trace of {n} requests (seed 3, max_wait 30 min):")
        for mode in ("refuse", "retry", "line"):
            m = r[mode]
            print(
                f"  {mode:<7} served within 10 min {m['served_within_10_min_pct']:5.1f} %, "
                f"served {m['served_pct']:5.1f} %, mean wait {m['mean_wait_min']:5.1f} min",
                flush=True,
            )
        e = r["line"]["eta"]
        ratio = r["line"]["served_within_10_min_pct"] / max(
            r["refuse"]["served_within_10_min_pct"], 1e-9
        )
        print(f"  line / refuse, served within 10 min: {ratio:.2f}x")
        for w, m in r["line_max_wait"].items():
            print(
                f"  line, max_wait {w // 60} min: served within 10 min "
                f"{m['served_within_10_min_pct']:5.1f} %, served {m['served_pct']:5.1f} %, "
                f"mean wait {m['mean_wait_min']:5.1f} min"
            )
        if e["compared"]:
            print(
                f"  ETA at enqueue: median |ETA - wait| {e['median_abs_error_min']:.1f} min, "
                f"{e['median_abs_error_pct']:.0f} % of the wait (median wait "
                f"{e['median_actual_wait_min']:.1f} min, median ETA - wait "
                f"{e['median_signed_error_min']:+.1f} min); {e['compared']} of "
                f"{e['waited']} waits compared, {e['unknown']} unknown, "
                f"{r['line']['timed_out']} timed out ({e['timed_out_with_eta_within_max_wait']} "
                "of them told an ETA within max_wait)",
                flush=True,
            )
    c = pass_cost(waiting=200 if quick else 1000, repeats=20 if quick else 300)
    out["pass_cost"] = c
    print(
        f"admission pass per freed slice, {c['waiting']} waiting, {c['running']} running: "
        f"median {c['pass_us']['median']:.0f} us, p99 {c['pass_us']['p99']:.0f} us; with "
        f"every place's ETA recomputed: median {c['pass_and_etas_us']['median']:.0f} us, "
        f"p99 {c['pass_and_etas_us']['p99']:.0f} us"
    )
    print(f"  KubeSpawner: {c['kubespawner']}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    run(parser.parse_args().quick)


if __name__ == "__main__":
    main()
