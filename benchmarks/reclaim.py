"""Reclaiming idle GPU servers for the waiting line, on a seeded day (issue 23).

The waiting line benchmark's day (:mod:`.waitline`: ``utilisation.trace``, seed 3, one
time unit = 5 minutes, the 4-H100 cluster, fallback chains, two teams, the real
``core.waitline.Line`` and ``admission.admit``, ``max_wait`` 30 min), starting at 08:00
UTC, with one change: users forget their servers. A session's trace length is its
*active part*; a seeded ``TAIL_SHARE`` (40 %) of the sessions then keep their server for
an *idle tail* of 1 to 4 hours (uniform) before stopping it, the rest stop when done.
The hub's activity signal of a server is the seconds since its active part ended (0 while
active); its GPU reading (``DCGM_FI_PROF_GR_ENGINE_ACTIVE``, the largest value over the
hour) is high while active and for the hour after, then 0 % -- except for a seeded
``BUSY_SHARE`` (25 %) of the tails, whose user left a job running on the GPU: idle by
the hub, busy by the GPU, so never idle by both signals.

Every admitted spawn becomes a pod of the cluster cache, marked as the spawner marks it,
so the planner reads the servers as the hub's would. Two policies, the same day:

- ``line``: the waiting line alone; an idle server holds its slice until its tail ends;
- ``line + reclaim``: the 1g and 2g notebook tiers with ``reclaim: {idle_after: 3600,
  grace: 600}``. ``core.reclaim.plan`` runs after every event and at least once a minute
  of simulated time, with the warnings it gave last time. A stop it orders makes the
  server *stopping* (it keeps its slice, and the plan is told so) for ``STOP_S`` (the
  kubelet's 30 s grace); then the pod is gone, its slice is free and the admission pass
  runs.

Printed: the share served within 10 minutes, served at all and the mean wait, for both;
the servers reclaimed and the GPU-hours of idle servers given back (a 1g slice = 1/7
GPU); the reclaim log of the day (a line per stop and per warning withdrawn) and its
checks, computed from the log: every stop for a place waiting at that moment, none
before its grace, never more stops in one pass than places waiting.

    python -m benchmarks.reclaim [--quick]
"""

from __future__ import annotations

import argparse
import datetime
import heapq
import random
import time
from dataclasses import dataclass

from mig_spawner.core import reclaim as planner
from mig_spawner.core.cluster import ADDED, DELETED
from mig_spawner.core.idle import GpuReading, percent
from mig_spawner.core.policy import build_policy
from mig_spawner.core.waitline import Line

from . import synthetic, utilisation, waitline
from .waitline import ARRIVE, DEPART, EXPIRE, MAX_WAIT

TICK = 3  # after the events of the same instant
TICK_S = 60.0  # the plan runs at least this often
STOP_S = 30.0  # from a stop ordered to its slice free (the pod's termination grace)
DAY_START = 1_800_000_000.0  # 08:00 UTC
RULES = {"idle_after": 3600, "grace": 600}
RECLAIMED = {"notebook": "1g notebook", "medium": "2g notebook"}
TAIL_SHARE = 0.4
TAIL_S = (3600.0, 4 * 3600.0)
BUSY_SHARE = 0.25  # of the tails: a job left running, the GPU busy
GPU_METRIC = "DCGM_FI_PROF_GR_ENGINE_ACTIVE"
GPU_SLICES = 7  # compute slices of an H100: a GPU-hour is 7 slice-hours
LOG_SHOWN = 15


def policy(reclaiming: bool = True):
    """The utilisation benchmark's tiers; the notebook tiers with reclaim rules."""
    tiers = {slug: dict(tier) for slug, tier in utilisation.TIERS.items()}
    for slug, name in RECLAIMED.items():
        tiers[slug]["display_name"] = name
        if reclaiming:
            tiers[slug]["reclaim"] = dict(RULES)
    return build_policy(tiers=tiers, team_quotas={t: {} for t in utilisation.TEAMS})


def day(n: int, seed: int) -> list[dict]:
    """The waitline day from 08:00 UTC, each request with its idle tail and GPU figures."""
    rng = random.Random(seed + 1000)
    out = []
    for r in waitline.requests(n, seed):
        tail = rng.uniform(*TAIL_S) if rng.random() < TAIL_SHARE else 0.0
        busy = tail > 0 and rng.random() < BUSY_SHARE
        out.append(
            {
                **r,
                "start": DAY_START + r["start"],
                "end": DAY_START + r["end"],
                "server": f"s{r['id']}",
                "tail": tail,
                "load": rng.uniform(0.3, 0.95),  # the GPU's peak while active
                "tail_load": rng.uniform(0.3, 0.9) if busy else 0.0,
            }
        )
    return out


@dataclass
class Server:
    r: dict
    started: float
    node: str
    profile: str
    slices: int
    stopped_at: float | None = None  # a reclaim stop ordered
    ended_at: float | None = None  # its pod gone

    @property
    def active_until(self) -> float:
        return self.started + self.r["end"] - self.r["start"]

    @property
    def until(self) -> float:
        """When its user stops it (the end of the idle tail)."""
        return self.active_until + self.r["tail"]

    def idle_s(self, now: float) -> float:
        return max(now - self.active_until, 0.0)

    def gpu(self, now: float) -> GpuReading:
        window = RULES["idle_after"]
        peak = self.r["load"] if self.idle_s(now) < window else self.r["tail_load"]
        return GpuReading(GPU_METRIC, peak, int(window // 60))


def replay_day(reqs: list[dict], *, reclaiming: bool, max_wait: float = MAX_WAIT) -> dict:
    state = utilisation.cluster_state()
    pol = policy(reclaiming)
    by_key = {f"jhub/{r['id']}": r for r in reqs}
    line = Line()
    running: dict[str, int] = {}
    servers: dict[str, Server] = {}
    ended: dict[str, Server] = {}
    events = [(r["start"], ARRIVE, key) for key, r in by_key.items()]
    if reclaiming:
        events.append((reqs[0]["start"], TICK, ""))
    heapq.heapify(events)
    waits: dict[str, float] = {}
    refused = timed_out = 0
    warnings: dict[str, planner.Warned] = {}
    stopping: set[str] = set()
    log: list[dict] = []
    passes: list[tuple[int, int]] = []  # (stops, places waiting) of each pass that stopped
    warned = 0
    busy_spared: set[str] = set()

    def admit_waiting(now: float) -> None:
        nonlocal refused
        admitted, refused_now = waitline.admission_pass(line, state, pol, running)
        refused += len(refused_now)
        for place, d in admitted:
            r = by_key[place.key]
            res = state.reservations[place.key]
            obj = synthetic.pod(
                place.key.split("/", 1)[1],
                "jhub",
                res.node,
                d.granted.resource,
                user=r["user"],
                team=r["team"],
                tier=r["tier"],
                requested_profile=res.requested_profile,
                server_name=r["server"],
                created=_rfc3339(now),
            )
            state.apply_pod_event(ADDED, obj)  # the pod now holds what was reserved
            waits[place.key] = now - place.requested_at
            s = Server(r, now, res.node, d.granted.profile, d.granted.compute_slices)
            servers[place.key] = s
            heapq.heappush(events, (s.until, DEPART, place.key))

    def end(key: str, now: float) -> None:
        s = servers.pop(key)
        ended[key] = s
        s.ended_at = now
        pod = synthetic.pod(key.split("/", 1)[1], "jhub", s.node, f"nvidia.com/mig-{s.profile}")
        state.apply_pod_event(DELETED, pod)
        running[s.r["team"]] -= 1
        stopping.discard(key)

    def reclaim_pass(now: float) -> None:
        nonlocal warnings, warned
        line.set_running(running)
        places = line.order()
        p = planner.plan(
            pol,
            state,
            places,
            activity={k: s.idle_s(now) for k, s in servers.items()},
            gpu={k: s.gpu(now) for k, s in servers.items()},
            warnings=warnings,
            now=now,
            stopping=stopping,
        )
        warnings = dict(p.warnings)
        warned += len(p.warned)
        busy_spared.update(
            c.key for c in p.candidates if c.idleness and c.idleness.reason.startswith("GPU busy")
        )
        for w, why in p.withdrawn:
            s = servers.get(w.key) or ended[w.key]
            log.append(_entry("withdrawn", now, w, s, why=why))
        if p.stops:
            passes.append((len(p.stops), len(places)))
        for stop in p.stops:
            s = servers[stop.key]
            s.stopped_at = now
            stopping.add(stop.key)
            place = line.get(stop.for_key)
            entry = _entry("stopped", now, stop.warned, s, gpu=s.gpu(now).peak)
            entry.update(
                idle_s=s.idle_s(now),
                for_user=place.user if place else "",
                for_tier=_name(pol, place.tier) if place else "",
                waiting_s=now - place.requested_at if place else None,
                place_waiting=place is not None,
                places_waiting=len(places),
            )
            log.append(entry)
            heapq.heappush(events, (now + STOP_S, DEPART, stop.key))

    while events:
        now, kind, key = heapq.heappop(events)
        if kind == TICK:
            if any(k != TICK for _, k, _ in events):
                heapq.heappush(events, (now + TICK_S, TICK, ""))
        elif kind == DEPART:  # its user stops it, or a reclaim stop lands: the first ends it
            if key not in servers:
                continue
            end(key, now)
        elif kind == EXPIRE:
            if line.remove(key) is None:
                continue  # admitted before its deadline
            timed_out += 1
        elif not waitline.arrive(line, state, pol, key, by_key[key], now, max_wait):
            refused += 1
            continue
        admit_waiting(now)
        if kind == ARRIVE and key in line:
            heapq.heappush(events, (now + max_wait, EXPIRE, key))
        if reclaiming:
            reclaim_pass(now)

    stops = [e for e in log if e["event"] == "stopped"]
    every = list(ended.values())
    return {
        **waitline._served(len(reqs), list(waits.values())),
        "refused_at_once": refused,
        "timed_out": timed_out,
        "idle_gpu_hours_held": sum(_idle_gpu_h(s) for s in every),
        "reclaimed": len(stops),
        "gpu_hours_given_back": sum(
            max(s.until - s.ended_at, 0.0) * s.slices / GPU_SLICES / 3600
            for s in every
            if s.stopped_at is not None
        ),
        "warned": warned,
        "withdrawn": len(log) - len(stops),
        "idle_by_hub_but_gpu_busy": len(busy_spared),
        "log": log,
        "passes_with_stops": passes,
    }


def _idle_gpu_h(s: Server) -> float:
    """GPU-hours it held idle by both signals: from an hour after its work to its end."""
    if s.r["tail_load"]:
        return 0.0
    idle_from = s.active_until + RULES["idle_after"]
    return max(s.ended_at - idle_from, 0.0) * s.slices / GPU_SLICES / 3600


def _entry(event: str, now: float, w: planner.Warned, s: Server, **more) -> dict:
    return {
        "event": event,
        "at": now,
        "user": w.user,
        "tier": w.tier_name,
        "holds": w.holds,
        "node": s.node,
        "warned_at": w.warned_at,
        "deadline": w.deadline,
        **more,
    }


def _name(pol, slug: str) -> str:
    tier = pol.tier(slug)
    return tier.display_name if tier is not None else slug


def _rfc3339(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _hm(ts: float) -> str:
    return planner.clock(ts).removesuffix(" UTC")


def _span(seconds: float) -> str:
    """1 h 10 min, 1 h, 45 min."""
    hours, minutes = divmod(round(seconds / 60), 60)
    if not hours:
        return f"{minutes} min"
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def log_line(e: dict) -> str:
    server = f"{e['user']}'s {e['tier']} ({e['holds']} on {e['node']})"
    warned = f"warned {_hm(e['warned_at'])}"
    if e["event"] == "stopped":
        gpu = percent(e["gpu"])
        waiting = (
            f"for {e['for_user']}'s {e['for_tier']} waiting {_span(e['waiting_s'])}"
            if e["place_waiting"]
            else "for no place waiting"
        )
        return (
            f"{_hm(e['at'])} stopped {server}: idle {_span(e['idle_s'])}, GPU {gpu}; "
            f"{waiting}; {warned}"
        )
    return f"{_hm(e['at'])} withdrew the warning to {server}: {e['why']}; {warned}"


def checks(result: dict) -> dict:
    """What the log shows of the rules: stops only for a place waiting, after the grace,
    never more in one pass than places waiting."""
    stops = [e for e in result["log"] if e["event"] == "stopped"]
    after = [e["at"] - e["warned_at"] for e in stops]
    return {
        "stops": len(stops),
        "for_a_place_waiting": sum(e["place_waiting"] for e in stops),
        "at_or_after_grace": sum(e["at"] >= e["deadline"] for e in stops),
        "shortest_warning_s": min(after, default=None),
        "longest_warning_s": max(after, default=None),
        "grace_s": RULES["grace"],
        "passes_with_stops": len(result["passes_with_stops"]),
        "most_stops_in_a_pass": max((s for s, _ in result["passes_with_stops"]), default=0),
        "passes_with_more_stops_than_places": sum(s > w for s, w in result["passes_with_stops"]),
    }


def trace_run(n: int, seed: int = 3) -> dict:
    reqs = day(n, seed)
    out = {
        "requests": n,
        "seed": seed,
        "with_tail": sum(r["tail"] > 0 for r in reqs),
        "tail_gpu_busy": sum(r["tail_load"] > 0 for r in reqs),
        "line": replay_day(reqs, reclaiming=False),
        "reclaim": replay_day(reqs, reclaiming=True),
    }
    out["checks"] = checks(out["reclaim"])
    return out


def run(quick: bool = False) -> dict:
    n = 60 if quick else 100
    r = trace_run(n)
    print(
        f"reclaim, seeded day of {n} requests (seed {r['seed']}, from 08:00 UTC, max_wait "
        f"30 min): {r['with_tail']} servers kept idle 1-4 h after their work "
        f"({r['tail_gpu_busy']} of them with a job left running on the GPU); "
        f"{' and '.join(RECLAIMED.values())} reclaim after {_span(RULES['idle_after'])} idle, "
        f"grace {_span(RULES['grace'])}"
    )
    for mode, name in (("line", "line only"), ("reclaim", "line + reclaim")):
        m = r[mode]
        print(
            f"  {name:<15} served within 10 min {m['served_within_10_min_pct']:5.1f} %, "
            f"served {m['served_pct']:5.1f} %, mean wait {m['mean_wait_min']:5.1f} min; "
            f"{m['timed_out']} timed out; idle servers held {m['idle_gpu_hours_held']:.1f} "
            "GPU-h past their first idle hour",
            flush=True,
        )
    m = r["reclaim"]
    print(
        f"  reclaimed {m['reclaimed']} servers, {m['gpu_hours_given_back']:.1f} GPU-h of idle "
        f"servers given back (1g = 1/7 GPU); {m['warned']} warnings, {m['withdrawn']} "
        f"withdrawn; {m['idle_by_hub_but_gpu_busy']} servers idle by the hub but not by "
        "the GPU, never warned"
    )
    print("  the reclaim log of the day:")
    for e in m["log"][:LOG_SHOWN]:
        print(f"    {log_line(e)}")
    rest = m["log"][LOG_SHOWN:]
    if rest:
        stops = sum(e["event"] == "stopped" for e in rest)
        print(f"    ... and {len(rest)} more ({stops} stops, {len(rest) - stops} withdrawn)")
    c = r["checks"]
    shortest = c["shortest_warning_s"]
    print(
        f"  check: {c['stops']} stops, {c['for_a_place_waiting']} of them for a place "
        f"waiting at that moment, {c['at_or_after_grace']} at or after their grace of "
        f"{c['grace_s'] / 60:.0f} min (warning to stop "
        + (
            f"{shortest / 60:.1f}-{c['longest_warning_s'] / 60:.1f} min"
            if shortest is not None
            else "none"
        )
        + f"); at most {c['most_stops_in_a_pass']} stop(s) in one pass, "
        f"{c['passes_with_more_stops_than_places']} of {c['passes_with_stops']} passes "
        "with more stops than places waiting",
        flush=True,
    )
    return r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    t = time.perf_counter()
    run(parser.parse_args().quick)
    print(f"({time.perf_counter() - t:.1f} s)")


if __name__ == "__main__":
    main()
