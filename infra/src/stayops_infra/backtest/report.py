"""The backtest's table: per seed, the market drawn and what each strategy earned."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from stayops_infra.backtest.run import SeedResult


def backtest_rows(results: list[SeedResult]) -> list[list[str]]:
    rows = []
    for result in results:
        p, o = result.params, result.outcomes
        market = (f"{p.competitors + p.ours} listings, {p.currency} {p.level:.0f}, season ±{p.season_amplitude:.0%}"
                  f" ({'2 peaks' if len(p.season_peaks) > 1 else 'north' if p.season_peaks[0] > 100 else 'south'}),"
                  f" {len(p.events)} events, lead {p.mean_lead_days:.0f} d, last-minute {p.last_minute_share:.0%},"
                  f" sensitivity {p.sensitivity:.1f}")
        row = [str(p.seed), market]
        for strategy in ("static", "rules", "v2"):
            if strategy in o:
                row.append(f"{o[strategy].revpan:.2f} / {o[strategy].occupancy:.0%} / {o[strategy].adr:.2f}")
        if {"static", "rules", "v2"} <= set(o):
            row += [f"{result.gain_pct('rules', 'static'):+.1f} %", f"{result.gain_pct('v2', 'static'):+.1f} %",
                    f"{result.gain_pct('v2', 'rules'):+.1f} %", str(o["v2"].bounds_breached)]
        rows.append(row)
    return rows


def print_backtest(results: list[SeedResult], console: Console) -> None:
    table = Table("seed", "market", "static RevPAN / occ / ADR", "rules RevPAN / occ / ADR",
                  "v2 RevPAN / occ / ADR", "rules vs static", "v2 vs static", "v2 vs rules", "v2 min/max breaches")
    for row in backtest_rows(results):
        table.add_row(*row)
    console.print(table)
    console.print("Markdown:", highlight=False)
    console.print("| seed | market | static RevPAN / occ / ADR | rules | v2 | rules vs static | v2 vs static "
                  "| v2 vs rules | breaches |", highlight=False)
    console.print("|---|---|---|---|---|---|---|---|---|", highlight=False)
    for row in backtest_rows(results):
        console.print("| " + " | ".join(row) + " |", highlight=False)
