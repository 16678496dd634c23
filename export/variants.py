"""Reduced-precision variants: when one is worth shipping, and how its measurements read."""

from __future__ import annotations

from typing import Any

#: A variant ships only if it is at least this much faster on the CPU ...
SHIP_MIN_SPEEDUP = 1.5
#: ... for at most this PSNR cost against fp32 (dB), both measured by bench/variants.py.
SHIP_MAX_PSNR_COST_DB = 0.1


def markdown_table(result: dict[str, Any]) -> str:
    """The Markdown table of a ``bench/variants.py`` result (also used in model cards)."""
    lines = [
        f"Variants of `{result['model']}` ({result['date']}, {result['machine']}); "
        f"{result['held_out']}, noisy input {result['psnr_noisy']:.2f} dB; CPU time: "
        f"{result['timing']}; {result['rule']}.",
        "",
        "| precision | PSNR (dB) | cost vs fp32 (dB) | "
        + " | ".join(f"CPU s, {w}" for w in result["rows"][0]["seconds"])
        + " | speed-up | size (kB) | ship? |",
        "| --- " * (6 + len(result["rows"][0]["seconds"])) + "|",
    ]
    for r in result["rows"]:
        times = " | ".join(f"{t:.3f}" for t in r["seconds"].values())
        lines.append(
            f"| {r['precision']} | {r['psnr']:.3f} | {r['psnr_cost_db']:+.3f} | {times} | "
            f"{r['speedup_vs_fp32']:.2f}× | {r['file_bytes'] / 1e3:.0f} | "
            f"{'yes' if r['worth_shipping'] else 'no'} |"
        )
    return "\n".join(lines) + "\n"
