"""What ``mig-spawner advise`` prints: the table, the commands, and the plot (an SVG)."""

from __future__ import annotations

from html import escape

import yaml

from .advise import Advice, commands, configmap


def _layout_text(layouts) -> str:
    if not layouts:
        return "-"
    groups: dict[str, int] = {}
    for lay in layouts:
        groups[str(lay)] = groups.get(str(lay), 0) + 1
    return "; ".join(f"{n} GPU × [{text}]" if n > 1 else f"[{text}]" for text, n in groups.items())


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]


def render_text(advice: Advice) -> str:
    out = ["Nodes (current -> advised MIG layout, per GPU):"]
    rows = [["node", "GPU", "current", "advised", "mig.config"]]
    for p in advice.plans:
        advised = _layout_text(p.advised) if p.changed else "unchanged"
        if p.kept:
            advised = f"kept ({p.kept})"
        config = p.config if p.changed else (p.config_label or "-")
        gpu = p.model.display_name if p.model else "?"
        rows.append([p.name, gpu, _layout_text(p.current), advised, config])
    out += _table(rows)
    cur, adv = advice.current, advice.advised
    out += ["", f"Replay of {cur.requests} request(s) through the hub's decision code:"]
    rows = [["layout", "served", "refused", "mean wait", "p90 wait", "slice utilisation"]]
    for name, r in (("current", cur), ("advised", adv)):
        rows.append(
            [
                name,
                str(r.served),
                str(r.refused),
                f"{r.mean_wait_s:.1f} s",
                f"{r.p90_wait_s:.1f} s",
                f"{100 * r.utilisation:.1f} %",
            ]
        )
    out += _table(rows)
    runs = ", ".join(
        f"{'per session' if w == 'sessions' else f'{w} windows'}: {s.seconds:.2f} s, "
        f"gap {100 * s.gap:.3g} %"
        for w, s in advice.solutions
    )
    out += ["", f"Solver: MILP over valid placements (HiGHS): {runs}; chosen: {advice.chosen}."]
    if advice.demand.skipped:
        out.append(f"Skipped {advice.demand.skipped} garbled demand line(s), e.g.:")
        out += [f"  {p}" for p in advice.demand.problems[:5]]
    for why, n in advice.requests.left_out.items():
        out.append(f"Left out of the replay: {n} record(s): {why}.")
    cmds = commands(advice)
    if not cmds:
        out += ["", "No change advised: the current layout serves the demand as well."]
        return "\n".join(out)
    custom = [c for c in advice.configs if c.startswith("mig-spawner-")]
    out += ["", "To apply (or run again with --apply):"]
    if custom:
        out += [
            f"  # the custom config(s) {', '.join(custom)}: give mig-manager this ConfigMap",
            "  kubectl apply -f - <<'EOF'",
            *("  " + line for line in yaml.safe_dump(configmap(advice)).splitlines()),
            "  EOF",
            "  kubectl patch clusterpolicies.nvidia.com/cluster-policy --type merge -p "
            '\'{"spec":{"migManager":{"config":{"name":"mig-spawner-mig-parted-config"}}}}\'',
        ]
    out += [f"  {c}" for c in cmds]
    return "\n".join(out)


def write_svg(advice: Advice, path: str) -> None:
    """Served / refused for the current and advised layouts, and wait, as an SVG bar chart."""
    bars = [
        ("current", advice.current.served, advice.current.refused),
        ("advised", advice.advised.served, advice.advised.refused),
    ]
    top = max(max(s + r for _, s, r in bars), 1)
    width, height, left, base = 480, 300, 60, 250
    scale = 200 / top
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="14">'
        "Replayed demand: current vs advised MIG layout</text>",
        f'<line x1="{left}" y1="{base}" x2="{width - 20}" y2="{base}" stroke="black"/>',
    ]
    for i, (name, served, refused) in enumerate(bars):
        x = left + 40 + i * 180
        hs, hr = served * scale, refused * scale
        parts += [
            f'<rect x="{x}" y="{base - hs:.1f}" width="100" height="{hs:.1f}" fill="#4a7">'
            f"<title>served {served}</title></rect>",
            f'<rect x="{x}" y="{base - hs - hr:.1f}" width="100" height="{hr:.1f}" fill="#c44">'
            f"<title>refused {refused}</title></rect>",
            f'<text x="{x + 50}" y="{base + 16}" text-anchor="middle">{escape(name)}</text>',
            f'<text x="{x + 50}" y="{base - hs / 2:.1f}" text-anchor="middle" fill="white">'
            f"{served}</text>",
            f'<text x="{x + 50}" y="{base - hs - hr - 4:.1f}" text-anchor="middle">'
            f"{refused} refused</text>",
        ]
    waits = (
        f"mean wait {advice.current.mean_wait_s:.1f} s -> {advice.advised.mean_wait_s:.1f} s; "
        f"utilisation {100 * advice.current.utilisation:.1f} % -> "
        f"{100 * advice.advised.utilisation:.1f} %"
    )
    parts += [
        f'<text x="{width / 2}" y="{base + 36}" text-anchor="middle">{escape(waits)}</text>',
        '<rect x="20" y="32" width="10" height="10" fill="#4a7"/><text x="34" y="41">served</text>',
        '<rect x="90" y="32" width="10" height="10" fill="#c44"/>'
        '<text x="104" y="41">refused</text>',
        "</svg>",
    ]
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(parts) + "\n")
    except OSError as e:
        from .snapshot import InputError

        raise InputError(f"cannot write the plot {path}: {e.strerror or e}") from None
