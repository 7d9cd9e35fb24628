"""Every model on every rung of the difficulty ladder, with 20 and 50 grid-midpoint labels, over seeds.

Issue 12's acceptance: on every rung the kept model (``network="auto"``) is at least as accurate
as the best baseline on the same labels, within the seed-to-seed spread; on the faint rotated
scans (rungs ``faint-rotated`` and ``faint-45``) 50 grid-midpoint labels reach >= 0.92 accuracy
and >= 0.8 recall on each class; training on 50 labels takes <= 60 s on 2 cores.

Each run: simulate the rung's scan (``al4dstem.simulate.DIFFICULTY_LADDER``: a 72 x 56 bullseye
scan, 128 x 128 detector, seed = the run's seed), label ``budget`` positions with the
grid-midpoint sampler (random_state 0) answered by the truth (with the rung's label noise), fit
each model on those labels, map the scan, and score every position that was not labelled:
accuracy, recall per class, and the expected calibration error (ECE) of the raw probabilities
(temperature 1) and of the calibrated ones. ``auto`` is scored as what ``network="auto"`` keeps:
its cross-validation (``selection.cross_validate``) picks one of the other models, whose fit is
the same as the standalone one (same seed, same labels: deterministic on one thread), calibrated
with the temperature from its out-of-fold logits; its time is the cross-validation plus that fit.

    python benchmarks/bench_difficulty.py [--rungs easy default ...] [--seeds 0 1 2 3 4]
        [--budgets 20 50] [--models ghost "ghost 3x3" ... default auto] [--workers 2]
        [--out benchmarks/results/difficulty] [--add other-run.json ...] [--summarise-only]

CNN variants are model names too: "default canonical" (canonical orientation), "default semi"
(semi-supervised), "default pretrained" (fine-tuned from a CNN pre-trained on simulated patterns
matched to the scan's lattice, ``al4dstem.models.pretrain``; pre-trained once per scan, its time and
its accuracy before fine-tuning are in the run's "pretraining" record). ``--add`` joins the models of
other runs (same rungs, seeds and budgets, e.g.
the variants run on some rungs only) into one set of tables.

Writes ``OUT.json`` (every run) and ``OUT.md`` (mean +- sd tables). Each worker process runs
torch on one thread; on a 2-core machine ``--workers 2`` takes ~30 min for the whole ladder.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

MODELS = ("ghost", "ghost 3x3", "ghost 5x5", "softmax", "softmax 3x3", "pca-knn", "default", "auto")
#: What network="auto" is scored as: "auto" (every candidate), "auto baselines" (without the CNN: cheap, to
#: compare selection rules on many seeds; ``--tiebreaks``).
AUTOS = {"auto": None, "auto baselines": tuple(m for m in MODELS[:6])}
#: CNN variants (not in the default list: each costs a training per run): "default canonical" (canonical
#: orientation), "default semi" (semi-supervised on the scan's unlabelled patterns), "default 3x3", ...
VARIANT_WORDS = {"canonical": ("orientation", "canonical"), "semi": ("semi_supervised", True),
                 "pretrained": ("init", "pretrained")}


def model_params(name: str) -> dict:
    """CNNClassifier parameters of a model name: "ghost 3x3" -> network ghost, neighbourhood 3;
    "default canonical semi" -> network default, orientation canonical, semi_supervised True; "default pretrained":
    starting from weights pre-trained on simulated patterns matched to the scan (``models.pretrain``)."""
    if name in AUTOS:
        return {"network": "auto"}
    network, *words = name.split()
    params = {"network": network}
    for word in words:
        if word in VARIANT_WORDS:
            key, value = VARIANT_WORDS[word]
            params[key] = value
        else:
            params["neighbourhood"] = int(word.split("x")[0])
    return params
ACCEPT_ACCURACY, ACCEPT_RECALL, ACCEPT_TRAIN_S = 0.92, 0.8, 60.0


def label_positions(dataset, truth, budget: int, noise: float, seed: int):
    """Grid-midpoint labels (random_state 0) answered by the truth, a share ``noise`` of them wrong."""
    from al4dstem.labels import LabelStore, as_arrays
    from al4dstem.loop import run_labelling
    from al4dstem.oracles import TruthOracle
    from al4dstem.oracles.noisy import NoisyOracle
    from al4dstem.strategies import get_sampler

    rows, cols = truth.shape
    table = {(x, y): int(truth[y, x]) for y in range(rows) for x in range(cols)}
    oracle = NoisyOracle(table, noise, random_state=seed) if noise > 0 else TruthOracle(table)
    with tempfile.TemporaryDirectory() as tmp:
        with LabelStore(Path(tmp) / "labels.csv", dataset.scan_shape) as store:
            run_labelling(dataset, store, get_sampler("grid-midpoint", random_state=0), oracle, budget)
            return as_arrays(store.rows)


def near_boundaries(truth, reach: int = 2):
    """Bool map: positions within ``reach`` scan pixels of another class (walls and their edges)."""
    from scipy.ndimage import maximum_filter, minimum_filter

    size = 2 * reach + 1
    return maximum_filter(truth, size, mode="nearest") != minimum_filter(truth, size, mode="nearest")


def score(probs, truth, positions) -> dict:
    import numpy as np

    from al4dstem.models.calibration import expected_calibration_error

    mask = np.ones(truth.shape, bool)
    mask[positions[:, 1], positions[:, 0]] = False
    p, t = probs[mask], truth[mask]
    pred = p.argmax(1)
    edge = near_boundaries(truth)[mask]
    return {"accuracy": float((pred == t).mean()),
            "recall": [float((pred[t == c] == c).mean()) if (t == c).any() else float("nan") for c in range(3)],
            "boundary_accuracy": float((pred[edge] == t[edge]).mean()),
            "interior_accuracy": float((pred[~edge] == t[~edge]).mean()),
            "ece": expected_calibration_error(p, t)}


def raw_probs(probs, temperature: float):
    """The probabilities at temperature 1 from calibrated ones (softmax is shift invariant)."""
    import numpy as np

    from al4dstem.models.calibration import softmax

    flat = probs.reshape(-1, 3)
    return softmax(float(temperature) * np.log(np.clip(flat, 1e-30, None))).reshape(probs.shape)


def run_job(job: dict) -> dict:
    import warnings

    import numpy as np
    import torch

    torch.set_num_threads(1)
    from al4dstem.data import open_dataset
    from al4dstem.engines.local import predict_dataset
    from al4dstem.models import CNNClassifier
    from al4dstem.models.calibration import fit_temperature, softmax
    from al4dstem.models.neighbourhood import model_dataset
    from al4dstem.models.selection import choose, cross_validate
    from al4dstem.simulate import ladder_rung

    warnings.simplefilter("ignore")
    rung = ladder_rung(job["rung"])
    sim = rung.simulate(seed=job["seed"], threads=1)
    ds = open_dataset(sim.data)
    positions, classes = label_positions(ds, sim.truth, job["budget"], rung.label_noise, job["seed"])
    out = {**job, "n_labels": int(len(classes)), "label_counts": np.bincount(classes, minlength=3).tolist(),
           "models": {}}
    fitted = {}

    def fit(name):
        start = time.perf_counter()
        try:
            params = model_params(name)
            if params.get("init"):
                params["init"] = init_path
            clf = CNNClassifier(**params, dataset=ds, random_state=0, n_threads=1).fit(positions, classes)
        except Exception as e:  # a model that cannot run here (e.g. no lattice) is reported, not fatal
            out["models"][name] = {"error": str(e)}
            return
        seconds = time.perf_counter() - start
        probs, _ = predict_dataset(clf, model_dataset(clf, ds), n_threads=1)
        t = float(clf.network_.temperature)
        fitted[name] = (probs, t, seconds)
        if name in job["models"]:
            out["models"][name] = {**score(probs, sim.truth, positions), "seconds": seconds, "temperature": t,
                                   "ece_raw": score(raw_probs(probs, t), sim.truth, positions)["ece"],
                                   "warnings": clf.summary_.get("warnings", [])}

    if any(model_params(m).get("init") for m in job["models"]):  # pre-trained once per scan, on its lattice
        from al4dstem.models.pretrain import pretrain

        start = time.perf_counter()
        pre = pretrain(ds, random_state=0, n_threads=1)
        pretrain_seconds = time.perf_counter() - start
        pre_probs, _ = predict_dataset(pre, ds, n_threads=1)
        tmp = tempfile.TemporaryDirectory()
        init_path = Path(tmp.name) / "pretrained.pt"
        pre.save(init_path)
        out["pretraining"] = {"seconds": pretrain_seconds, **score(pre_probs, sim.truth, positions),
                              "simulated_patterns": pre.summary_["pretraining"]["simulated_patterns"]}

    for name in [m for m in job["models"] if m not in AUTOS]:
        fit(name)
    for name in [m for m in job["models"] if m in AUTOS]:
        start = time.perf_counter()
        auto = CNNClassifier(network="auto", dataset=ds, random_state=0, n_threads=1)
        auto.initialize(ds.detector_shape)
        candidates = AUTOS[name]
        table, oof, prepared, context = cross_validate(auto, positions, classes, ds.detector_shape,
                                                       candidates=candidates)
        kept, reason = choose(table, prepared, context["candidates"])
        cv_seconds = time.perf_counter() - start
        if kept not in fitted:  # the kept model's own fit is the one auto makes (same seed and labels)
            fit(kept)
        probs, t_own, seconds = fitted[kept]
        raw = raw_probs(probs, t_own)
        held = oof.get(kept)
        ok = np.isfinite(held).all(axis=1)
        t_auto = fit_temperature(held[ok], classes[ok]) if ok.sum() >= 2 else 1.0
        calibrated = softmax(np.log(np.clip(raw.reshape(-1, 3), 1e-30, None)), t_auto).reshape(raw.shape)
        out["models"][name] = {**score(calibrated, sim.truth, positions), "kept": kept, "reason": reason,
                               "seconds": cv_seconds + seconds, "temperature": t_auto,
                               "ece_raw": score(raw, sim.truth, positions)["ece"],
                               "cv": {k: {kk: vv for kk, vv in v.items() if kk != "n_scored"}
                                      for k, v in table.items()}}
    return out


def _mean_sd(values) -> tuple[float, float]:
    values = [v for v in values if v == v]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _cell(values, digits: int = 3, expected: int | None = None) -> str:
    """``mean ± sd``; ``(n=K)`` added where fewer than ``expected`` seeds ran."""
    m, s = _mean_sd(values)
    if m != m:
        return "n/a"
    fewer = f" (n={len(values)})" if expected is not None and len(values) < expected else ""
    return f"{m:.{digits}f} ± {s:.{digits}f}{fewer}"


def summarise(runs: list[dict], rungs, budgets, models) -> tuple[str, dict]:
    from al4dstem.simulate import ladder_rung

    lines = ["# Difficulty ladder (issue 12)", "",
             f"{len({r['seed'] for r in runs})} seeds per cell (scan seed; grid-midpoint labels, random_state 0); "
             "72 x 56 bullseye scan, 128 x 128 detector; scored on every position not labelled.", "",
             "| rung | what |", "|---|---|"]
    lines += [f"| {name} | {ladder_rung(name).note} |" for name in rungs]
    verdict: dict = {"auto_vs_best_baseline": [], "faint": [], "train_50_s": []}
    n_seeds = len({r["seed"] for r in runs})

    def cells(metric):
        table = [f"| rung | labels | {' | '.join(models)} |", "|---|---|" + "---|" * len(models)]
        for name in rungs:
            for budget in budgets:
                sel = [r for r in runs if r["rung"] == name and r["budget"] == budget]
                row = [f"| {name} | {budget} "]
                for m in models:
                    row.append(_cell([metric(r["models"][m]) for r in sel if m in r["models"]
                                      and "error" not in r["models"][m]], expected=n_seeds))
                table.append(" | ".join(row) + " |")
        return table

    lines += ["", "## Accuracy (mean ± sd over seeds)", ""] + cells(lambda s: s["accuracy"])
    lines += ["", "## Recall of none (walls), mean ± sd", ""] + cells(lambda s: s["recall"][0])
    lines += ["", "## Accuracy within 2 scan pixels of a domain boundary (the cost of pooling), mean ± sd", ""]
    lines += cells(lambda s: s["boundary_accuracy"])
    lines += ["", "## Accuracy further from boundaries, mean ± sd", ""] + cells(lambda s: s["interior_accuracy"])
    lines += ["", "## Lowest per-class recall, mean ± sd", ""] + cells(lambda s: min(s["recall"]))
    lines += ["", "## Expected calibration error: raw (temperature 1) -> calibrated, mean over seeds", "",
              f"| rung | labels | {' | '.join(models)} |", "|---|---|" + "---|" * len(models)]
    for name in rungs:
        for budget in budgets:
            sel = [r for r in runs if r["rung"] == name and r["budget"] == budget]
            row = [f"| {name} | {budget} "]
            for m in models:
                ok = [r["models"][m] for r in sel if m in r["models"] and "error" not in r["models"][m]]
                raw, cal = _mean_sd([s["ece_raw"] for s in ok])[0], _mean_sd([s["ece"] for s in ok])[0]
                fewer = sum(s["ece"] == s["ece"] for s in ok)
                row.append(f"{raw:.3f} -> {cal:.3f}" + (f" (n={fewer})" if fewer < len(ok) else ""))
            lines.append(" | ".join(row) + " |")
    lines += tiebreaks(runs, rungs, budgets)
    pre = [r for r in runs if "pretraining" in r]
    if pre:
        lines += ["", "## Pre-training on simulated patterns (\"pretrained\" models): the pre-trained CNN before "
                  "fine-tuning, and its cost", "",
                  "| rung | labels | accuracy before fine-tuning | pre-training s (mean, max) | seeds |",
                  "|---|---|---|---|---|"]
        for name in rungs:
            for budget in budgets:
                sel = [r["pretraining"] for r in pre if r["rung"] == name and r["budget"] == budget]
                if sel:
                    secs = [p["seconds"] for p in sel]
                    lines.append(f"| {name} | {budget} | {_cell([p['accuracy'] for p in sel])} | "
                                 f"{statistics.fmean(secs):.1f}, {max(secs):.1f} | {len(sel)} |")
    if "auto" in models:
        lines += ["", "## What auto kept (count over seeds) and its training time", "",
                  "| rung | labels | kept | train s (mean, max) |", "|---|---|---|---|"]
        baselines = [m for m in models if model_params(m)["network"] in ("ghost", "softmax", "pca-knn")]
        for name in rungs:
            for budget in budgets:
                sel = [r for r in runs if r["rung"] == name and r["budget"] == budget and "auto" in r["models"]]
                if not sel:
                    continue
                kept: dict[str, int] = {}
                for r in sel:
                    kept[r["models"]["auto"]["kept"]] = kept.get(r["models"]["auto"]["kept"], 0) + 1
                secs = [r["models"]["auto"]["seconds"] for r in sel]
                lines.append(f"| {name} | {budget} | {', '.join(f'{k} {v}' for k, v in sorted(kept.items()))} | "
                             f"{statistics.fmean(secs):.1f}, {max(secs):.1f} |")
                auto_acc = [r["models"]["auto"]["accuracy"] for r in sel]
                if baselines:  # a run of auto alone has nothing to compare with
                    best = max(baselines, key=lambda m: _mean_sd([r["models"][m]["accuracy"] for r in sel if "error"
                                                                  not in r["models"].get(m, {"error": 1})])[0])
                    best_acc = [r["models"][best]["accuracy"] for r in sel if "error" not in r["models"][best]]
                    ma, sa = _mean_sd(auto_acc)
                    mb, sb = _mean_sd(best_acc)
                    verdict["auto_vs_best_baseline"].append(
                        {"rung": name, "budget": budget, "auto": ma, "best_baseline": best, "baseline": mb,
                         "spread": max(sa, sb), "ok": bool(ma >= mb - max(sa, sb))})
                if budget == 50:
                    verdict["train_50_s"].append({"rung": name, "max": max(secs), "mean": statistics.fmean(secs)})
                if name in ("faint-rotated", "faint-45") and budget == 50:
                    for r in sel:
                        s = r["models"]["auto"]
                        ok = s["accuracy"] >= ACCEPT_ACCURACY and min(s["recall"]) >= ACCEPT_RECALL
                        verdict["faint"].append({"rung": name, "seed": r["seed"], "accuracy": s["accuracy"],
                                                 "recall": s["recall"], "ok": bool(ok)})
        lines += ["", "## Acceptance", ""]
        for v in verdict["auto_vs_best_baseline"]:
            lines.append(f"- {v['rung']}, {v['budget']} labels: auto {v['auto']:.3f} vs best baseline "
                         f"{v['best_baseline']} {v['baseline']:.3f} (spread {v['spread']:.3f}): "
                         f"{'ok' if v['ok'] else 'BELOW'}")
        for v in verdict["faint"]:
            lines.append(f"- {v['rung']} seed {v['seed']}, 50 labels: accuracy {v['accuracy']:.3f}, recall "
                         f"{' / '.join(f'{x:.2f}' for x in v['recall'])}: {'ok' if v['ok'] else 'BELOW'}")
        for v in verdict["train_50_s"]:
            lines.append(f"- training auto on 50 labels, {v['rung']}: mean {v['mean']:.1f} s, max {v['max']:.1f} s "
                         f"(one thread; wall seconds on a shared 2-core machine, other jobs running)")
    return "\n".join(lines) + "\n", verdict


def reselect(run: dict) -> bool:
    """Apply ``selection.choose`` to the stored cross-validation of ``run``'s auto; where it keeps another
    model than the stored one, auto's scores become that model's standalone ones (the fit auto makes is
    the same: same seed, same labels). Returns whether it changed."""
    from al4dstem.models.selection import POOLED_CANDIDATES, choose

    auto = run["models"].get("auto")
    if not auto or "cv" not in auto:
        return False
    candidates = tuple(n for n in POOLED_CANDIDATES if n in auto["cv"])
    kept, reason = choose(auto["cv"], {}, candidates)
    if kept == auto["kept"] or kept not in run["models"] or "accuracy" not in run["models"][kept]:
        return False
    own, old = run["models"][kept], run["models"].get(auto["kept"], {})
    cv_seconds = auto["seconds"] - old.get("seconds", 0.0)
    run["models"]["auto"] = {**auto, **{k: own[k] for k in ("accuracy", "recall", "boundary_accuracy",
                                                            "interior_accuracy", "ece_raw")},
                             "ece": float("nan"), "kept": kept, "reason": reason, "reselected": True,
                             "seconds": cv_seconds + own["seconds"]}
    return True


def unpooled_first(table: dict, candidates) -> str | None:
    """What auto kept before PREFERENCE: the highest accuracy, then balanced accuracy, then the earlier
    candidate (unpooled first)."""
    import math

    scored = [n for n in candidates if n in table and not math.isnan(table[n]["cv_accuracy"])]
    if not scored:
        return None
    return max(scored, key=lambda n: (table[n]["cv_accuracy"], table[n]["cv_balanced_accuracy"],
                                      -candidates.index(n)))


def _cv(run: dict, auto: str) -> dict | None:
    """The stored cross-validation of ``auto`` in ``run``; for "auto baselines", also that of a full "auto"
    restricted to the baselines (the same numbers: every candidate sees the same folds, deterministically)."""
    if "cv" in run["models"].get(auto, {}):
        return run["models"][auto]["cv"]
    if AUTOS[auto] is not None and "cv" in run["models"].get("auto", {}):
        return {k: v for k, v in run["models"]["auto"]["cv"].items() if k in AUTOS[auto]}
    return None


def tiebreaks(runs: list[dict], rungs, budgets) -> list[str]:
    """Accuracy of what each auto would keep from its stored cross-validation under the tie-break before
    (unpooled first) and now (``selection.choose``), next to the best baseline: the selection rule's
    evidence, from the same runs."""
    from al4dstem.models.selection import POOLED_CANDIDATES, choose

    lines = []
    for auto in AUTOS:
        if not any(auto in r["models"] for r in runs):  # the baselines' part of a full auto only beside real ones
            continue
        rows = []
        for name in rungs:
            for budget in budgets:
                sel = [r for r in runs if r["rung"] == name and r["budget"] == budget and _cv(r, auto)]
                if not sel:
                    continue
                before, now = [], []
                for r in sel:
                    table = _cv(r, auto)
                    for rule, acc in ((unpooled_first(table, POOLED_CANDIDATES), before),
                                      (choose(table, {}, POOLED_CANDIDATES)[0], now)):
                        acc.append(r["models"][rule]["accuracy"] if rule in r["models"] else float("nan"))
                baselines = [m for m in MODELS[:6] if all(m in r["models"] and "accuracy" in r["models"][m]
                                                          for r in sel)]
                if not baselines or any(k != k for k in before + now):  # runs of auto alone: no scores to look up
                    continue
                best = max(baselines, key=lambda m: _mean_sd([r["models"][m]["accuracy"] for r in sel])[0])
                rows.append(f"| {name} | {budget} | {_cell(before)} | {_cell(now)} | {best} "
                            f"{_cell([r['models'][best]['accuracy'] for r in sel])} | {len(sel)} |")
        if rows:
            lines += ["", f"## Tie-breaks of `{auto}`: what its cross-validation keeps on a tie, unpooled first "
                      "(before) or `selection.PREFERENCE` (now), accuracy mean ± sd", "",
                      "| rung | labels | unpooled first | now | best baseline | seeds |", "|---|---|---|---|---|---|"]
            lines += rows
    return lines


def main(argv=None) -> int:
    from al4dstem.simulate import DIFFICULTY_LADDER

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rungs", nargs="+", default=[r.name for r in DIFFICULTY_LADDER])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--budgets", nargs="+", type=int, default=[20, 50])
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "difficulty")
    ap.add_argument("--add", type=Path, nargs="*", default=[],
                    help="OUT.json or OUT.jsonl files of other runs (e.g. CNN variants on some rungs) whose models "
                         "join the tables")
    ap.add_argument("--summarise-only", action="store_true", help="no new runs: tables from --add files")
    ap.add_argument("--note", action="append", default=[],
                    help="a paragraph added to the report (e.g. how the joined runs were made); repeatable")
    ap.add_argument("--reselect", action="store_true",
                    help="apply today's selection rule (selection.choose) to the stored cross-validation of every "
                         "auto run: where it keeps another model, auto's scores become that model's own (the same "
                         "fit, so every accuracy and the raw ECE are exact; the calibrated ECE is left out)")
    ap.add_argument("--resume", action="store_true",
                    help="keep the runs already in OUT.jsonl (each run is appended there as it ends) and do the rest")
    args = ap.parse_args(argv)

    jobs = [{"rung": r, "seed": s, "budget": b, "models": args.models}
            for r in args.rungs for b in args.budgets for s in args.seeds]
    start = time.perf_counter()
    print(f"{len(jobs)} runs on {args.workers} worker(s); machine {os.cpu_count()} cores, load "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    runs = []
    log = args.out.with_suffix(".jsonl")  # every run as it ends: a long benchmark stopped early keeps its runs
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.resume and log.exists():
        runs = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        have = {(r["rung"], r["budget"], r["seed"], frozenset(r["models"])) for r in runs}
        jobs = [j for j in jobs if (j["rung"], j["budget"], j["seed"], frozenset(j["models"])) not in have]
    elif not args.summarise_only:
        log.write_text("")

    total = len(runs) + len(jobs)

    def done(r):
        runs.append(r)
        with log.open("a") as f:
            f.write(json.dumps(r) + "\n")
        _progress(r, len(runs), total, start)

    if args.summarise_only:
        jobs = []
    elif args.workers > 1:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
            for r in pool.imap_unordered(run_job, jobs):
                done(r)
    else:
        for job in jobs:
            done(run_job(job))
    models = list(args.models)
    for path in args.add:  # join other runs' models to the same (rung, budget, seed)
        content = path.read_text()
        extra = ([json.loads(line) for line in content.splitlines() if line.strip()] if path.suffix == ".jsonl"
                 else json.loads(content)["runs"])
        for r in extra:
            same = next((q for q in runs if (q["rung"], q["budget"], q["seed"]) == (r["rung"], r["budget"], r["seed"])),
                        None)
            if same is None:
                runs.append(same := {**r, "models": {}})
            if "pretraining" in r:
                same.setdefault("pretraining", r["pretraining"])
            for m, v in r["models"].items():
                same["models"].setdefault(m, v)
                if m not in models:
                    models.insert(models.index("auto") if "auto" in models else len(models), m)
    runs = [r for r in runs if r["rung"] in args.rungs and r["budget"] in args.budgets]
    reselected = sum(reselect(r) for r in runs) if args.reselect else 0
    runs.sort(key=lambda r: (args.rungs.index(r["rung"]), r["budget"], r["seed"]))
    text, verdict = summarise(runs, args.rungs, args.budgets, models)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"python": sys.version.split()[0], "machine": platform.machine(), "cores": os.cpu_count(),
            "seconds": time.perf_counter() - start, "args": {k: (str(v) if isinstance(v, Path) else v)
                                                             for k, v in vars(args).items()}}
    record = {"meta": meta, "verdict": verdict, "runs": runs}
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=1, default=str))
    joined = f"; models joined from {', '.join(p.name for p in args.add)}" if args.add else ""
    if args.reselect:
        joined += (f"; --reselect: today's tie-break keeps another model than the stored auto in {reselected} "
                   "runs, whose auto scores are that model's own (calibrated ECE of those runs left out)")
    notes = "".join(f"\n{note}\n" for note in args.note)
    args.out.with_suffix(".md").write_text(text + f"\n{len(jobs)} runs in {meta['seconds'] / 60:.1f} min{joined}.\n"
                                           + notes)
    print(text)
    return 0


def _progress(r: dict, done: int, total: int, start: float) -> None:
    accs = ", ".join(f"{m} {s['accuracy']:.3f}" if "accuracy" in s else f"{m} error" for m, s in r["models"].items())
    kept = r["models"].get("auto", {}).get("kept", "")
    print(f"[{done}/{total} {(time.perf_counter() - start) / 60:.1f} min] {r['rung']} seed {r['seed']} "
          f"{r['budget']} labels: {accs} (auto kept {kept})", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
