"""``al4dstem benchmark``: the evidence tables (``al4dstem.benchmarking`` does the work)."""

from __future__ import annotations

from pathlib import Path

import typer

from al4dstem.cli.app import app, console, out
from al4dstem.errors import Al4dstemError

NAMES = ("table1", "curves")


def _names(text: str | None) -> list[str] | None:
    return [part.strip() for part in text.split(",") if part.strip()] if text else None


def _budgets(text: str | None) -> list[int] | None:
    try:
        return [int(b) for b in _names(text)] if text else None
    except ValueError:
        raise Al4dstemError(f"budgets must be whole numbers separated by commas, got {text!r}") from None


@app.command()
def benchmark(
    name: str = typer.Argument(..., help="table1 (the paper's Table 1: samplers x 50/100/250 labels on the paper-like "
                                         "scan) or curves (learning curves, 5 to 250 labels, on several scans)."),
    out_stem: Path | None = typer.Option(None, "--out", help="Output stem: writes STEM.md, .json, .png and STEM-raw/ "
                                                             "(default: benchmarks/results/NAME)."),
    seeds: int | None = typer.Option(None, "--seeds", help="Paired seeds (default: 10 for table1, 3 for curves)."),
    jobs: int = typer.Option(1, "--jobs", help="Processes running seeds in parallel."),
    samplers: str | None = typer.Option(None, "--samplers", help="Comma-separated sampler names (default: "
                                                                 "grid-midpoint,random,uncertainty,hybrid)."),
    budgets: str | None = typer.Option(None, "--budgets", help="Comma-separated label budgets."),
    oracle: str = typer.Option("truth", "--oracle", help="truth, or human:RATE (human-like, e.g. human:0.03)."),
    reference: Path | None = typer.Option(None, "--reference", help="table1: the stem of a perfect-oracle run on the "
                                                                    "same seeds to set beside this one."),
    scenarios: str | None = typer.Option(None, "--scenarios", help="curves: comma-separated scans (paper, tilted, "
                                                                   "bullseye, needles, stripes, GEOMETRY@RUNG)."),
    model_driven_on: str | None = typer.Option(None, "--model-driven-on", help="curves: run uncertainty and hybrid "
                                                                               "only on these scans."),
    master_seed: int | None = typer.Option(None, "--master-seed", help="Seed of the seeds (default: 2026 for "
                                                                       "table1, 2027 for curves)."),
    detector: int = typer.Option(64, "--detector", help="Detector side of the simulated scans (the paper's: 256)."),
    report_only: bool = typer.Option(False, "--report-only", help="Run no job; report the ones finished in "
                                                                  "STEM-raw/."),
    smoke: bool = typer.Option(False, "--smoke", help="Tiny scans, 2 seeds, 2 budgets, 2 epochs: checks that the "
                                                      "benchmark runs (its figures mean nothing)."),
) -> None:
    """Regenerate the evidence: the paper's Table 1 or the learning curves.

    Simulated scans with known truth, every sampler with the CNN in the loop, paired seeds,
    baselines on the same labels. Resumes from the jobs in STEM-raw/."""
    from al4dstem import benchmarking as bm

    if name not in NAMES:
        raise Al4dstemError(f"unknown benchmark {name!r} (one of {', '.join(NAMES)})")
    stem = out_stem if out_stem is not None else Path("benchmarks") / "results" / name
    common = {"jobs": jobs, "oracle": oracle, "detector": detector, "report_only": report_only, "smoke": smoke,
              "log": lambda message: console.print(message, highlight=False)}
    for key, value in (("samplers", _names(samplers)), ("budgets", _budgets(budgets)), ("seeds", seeds),
                       ("master_seed", master_seed)):
        if value is not None:
            common[key] = value
    if name == "table1":
        if scenarios or model_driven_on:
            raise Al4dstemError("--scenarios and --model-driven-on belong to curves; table1 runs the paper-like scan")
        paths = bm.run_table1(stem, reference=reference, **common)
    else:
        if reference is not None:
            raise Al4dstemError("--reference belongs to table1")
        paths = bm.run_curves(stem, scenarios=_names(scenarios), model_driven_on=_names(model_driven_on), **common)
    out.print("written: " + ", ".join(str(p) for p in paths), highlight=False, soft_wrap=True)
