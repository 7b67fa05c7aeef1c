"""The status page's HTML: a plain function of a snapshot, nothing fetched by the browser.

Server-rendered, with the chart as inline SVG and the styles inline: no script, no font, no
CDN, so it works on a machine without internet and its Content-Security-Policy lets
nothing leave. It reloads itself every few seconds.
"""

from __future__ import annotations

from html import escape

from services.ledger.status import MinuteCounts, QueueDepth, ServiceHealth, StatusSnapshot

CHART_WIDTH, CHART_HEIGHT = 720, 220
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 48, 12, 12, 28
SERIES = (("accepted", "#2563eb"), ("sent", "#16a34a"), ("failed", "#dc2626"))
PROVIDER_STATES = {
    "ok": ("closed", "good", "the provider takes sends"),
    "auth_error": ("OPEN", "bad", "the provider refuses the credentials: sending is stopped"),
    "no_credits": ("OPEN", "bad", "the provider account has no credit: sending is stopped"),
    "unknown": ("unknown", "warn", "Redis did not answer"),
}
HEALTH_CLASSES = {"ready": "good", "not ready": "bad", "unreachable": "bad"}

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1f2937;background:#f9fafb}
h1{font-size:20px;margin:0 0 4px}h2{font-size:15px;margin:0 0 8px}
.muted{color:#6b7280}.grid{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
section{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:12px 16px;margin-top:16px}
.grid section{margin-top:0}.grid{margin-top:16px}
table{border-collapse:collapse}td,th{padding:3px 12px 3px 0;text-align:left}td.n{text-align:right}
.badge{display:inline-block;padding:0 8px;border-radius:10px;font-weight:600}
.good{background:#dcfce7;color:#166534}.bad{background:#fee2e2;color:#991b1b}.warn{background:#fef9c3;color:#854d0e}
.legend span{margin-right:16px}.swatch{display:inline-block;width:10px;height:10px;margin-right:4px}
"""


def render_status_page(snapshot: StatusSnapshot, refresh_seconds: int) -> str:
    generated = snapshot.generated_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta http-equiv="refresh" content="{refresh_seconds}">
<title>RSMS Gateway status</title><style>{STYLE}</style></head>
<body>
<h1>RSMS Gateway status</h1>
<div class="muted">As of {generated}; this page reloads every {refresh_seconds} s. Read-only.</div>
<div class="grid">
<section id="services"><h2>Services</h2>{_services(snapshot.services)}</section>
<section id="provider"><h2>Provider circuit</h2>{_provider(snapshot.provider)}</section>
<section id="queues"><h2>Queues and dead letters</h2>{_queues(snapshot.queues)}</section>
</div>
<section id="traffic"><h2>Recipients per minute, last hour (live traffic)</h2>{_traffic(snapshot.traffic)}</section>
</body></html>
"""


def _services(services: list[ServiceHealth]) -> str:
    rows = "".join(
        f'<tr><td>{escape(s.name)}</td><td><span class="badge {HEALTH_CLASSES[s.state]}">{escape(s.state)}</span>'
        f'</td><td class="muted">{escape(s.url)}</td></tr>'
        for s in services
    )
    return f"<table>{rows}</table>"


def _provider(state: str) -> str:
    shown, css, meaning = PROVIDER_STATES.get(state, (state, "warn", "unknown state"))
    return f'<span class="badge {css}">{escape(shown)}</span> <span class="muted">{escape(meaning)}</span>'


def _queues(queues: list[QueueDepth]) -> str:
    rows = []
    for q in queues:
        depth = "?" if q.depth is None else f"{q.depth:,}"
        alarm = ' class="badge bad"' if q.dead_letters and q.depth else ""
        rows.append(
            f'<tr><td>{escape(q.name)}</td><td class="n"><span{alarm}>{depth}</span></td>'
            f'<td class="muted">{escape(q.what)}</td></tr>'
        )
    return "<table><tr><th>queue</th><th>messages</th><th></th></tr>" + "".join(rows) + "</table>"


def _traffic(traffic: list[MinuteCounts] | None) -> str:
    if traffic is None:
        return '<span class="badge warn">ClickHouse did not answer</span>'
    totals = {name: sum(_value(m, name) for m in traffic) for name, _ in SERIES}
    legend = "".join(
        f'<span><i class="swatch" style="background:{colour}"></i>{name} <b id="total-{name}">{totals[name]:,}</b>'
        "</span>"
        for name, colour in SERIES
    )
    return f'<div class="legend">{legend}<span class="muted">in the hour</span></div>{chart_svg(traffic)}'


def chart_svg(traffic: list[MinuteCounts]) -> str:
    """Three lines over the minutes, with the highest count and the time marks as labels."""
    peak = max([1, *(_value(m, name) for m in traffic for name, _ in SERIES)])
    width = CHART_WIDTH - PAD_LEFT - PAD_RIGHT
    height = CHART_HEIGHT - PAD_TOP - PAD_BOTTOM
    step = width / max(1, len(traffic) - 1)

    def x(i: int) -> float:
        return PAD_LEFT + i * step

    def y(value: int) -> float:
        return PAD_TOP + height - height * value / peak

    parts = [
        f'<svg id="chart" xmlns="http://www.w3.org/2000/svg" width="{CHART_WIDTH}" height="{CHART_HEIGHT}" '
        f'viewBox="0 0 {CHART_WIDTH} {CHART_HEIGHT}" role="img" aria-label="recipients per minute">',
        f'<line x1="{PAD_LEFT}" y1="{y(0):.1f}" x2="{CHART_WIDTH - PAD_RIGHT}" y2="{y(0):.1f}" stroke="#9ca3af"/>',
        f'<line x1="{PAD_LEFT}" y1="{PAD_TOP}" x2="{PAD_LEFT}" y2="{y(0):.1f}" stroke="#9ca3af"/>',
        f'<text x="{PAD_LEFT - 6}" y="{PAD_TOP + 10}" text-anchor="end" font-size="11">{peak:,}</text>',
        f'<text x="{PAD_LEFT - 6}" y="{y(0):.1f}" text-anchor="end" font-size="11">0</text>',
    ]
    for i in range(0, len(traffic), 15):
        label = traffic[i].minute.strftime("%H:%M")
        parts.append(f'<text x="{x(i):.1f}" y="{CHART_HEIGHT - 8}" text-anchor="middle" font-size="11">{label}</text>')
    parts.append(
        f'<text x="{x(len(traffic) - 1):.1f}" y="{CHART_HEIGHT - 8}" text-anchor="end" font-size="11">'
        f"{traffic[-1].minute.strftime('%H:%M')}</text>"
    )
    for name, colour in SERIES:
        points = " ".join(f"{x(i):.1f},{y(_value(m, name)):.1f}" for i, m in enumerate(traffic))
        parts.append(f'<polyline id="line-{name}" fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>')
    parts.append("</svg>")
    return "".join(parts)


def _value(minute: MinuteCounts, series: str) -> int:
    return {"accepted": minute.accepted, "sent": minute.sent, "failed": minute.failed}[series]
