"""Write koala_lib/ab_bins.csv: the in-gamut a,b bins of the classification head.

Run: .venv/bin/python scripts/ab_bins.py  (about 10 s; tests/test_quantize.py checks the
file against a fresh computation)."""

from pathlib import Path

from koala_lib.quantize import BINS_FILE, GRID, compute_in_gamut_bins

centres = compute_in_gamut_bins(GRID)
path = Path(__file__).resolve().parents[1] / "koala_lib" / BINS_FILE
lines = ["a,b"] + [f"{a:g},{b:g}" for a, b in centres]
path.write_text("\n".join(lines) + "\n")
print(f"{len(centres)} bins on a grid of {GRID} -> {path}")
