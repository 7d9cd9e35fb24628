"""The active-learning loop: sampler -> oracle -> label store -> model, round after round.

Only the contracts of ``al4dstem.base`` are used, so any sampler, oracle or model that keeps
them plugs in. The label store is the loop's whole memory: every answer is on disk before
the oracle is asked for the next one, and a rerun on the same file continues where the last
one stopped (samplers replay from the labels). The state of a run lives in
``al4dstem.session.LabellingSession``; this module only drives it with an oracle.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import closing

from al4dstem.base import UNDO, Model, Oracle, QuitLabelling, Sampler
from al4dstem.errors import Al4dstemError
from al4dstem.labels import LabelStore
from al4dstem.session import MODEL_ROUND, LabellingResult, LabellingSession, unanswered

__all__ = ["MODEL_ROUND", "LabellingResult", "drive", "run_labelling", "unanswered"]


def run_labelling(dataset, store: LabelStore, sampler: Sampler, oracle: Oracle, budget: int,
                  model: Model | None = None, round_size: int | None = None,
                  retrain: bool | None = None,
                  progress: Callable[[int, int], None] | None = None,
                  background_retrain: bool = False) -> LabellingResult:
    """Label until ``budget`` confirmed labels are in ``store`` (skips do not count).

    Each round asks ``sampler`` for up to ``round_size`` positions (default: what the budget
    leaves, or ``MODEL_ROUND`` when a model is retrained), then ``oracle`` for their answers,
    each recorded at once. ``UNDO`` appends a retraction of the last answer and ends the
    round; that position is asked again first. ``retrain`` (default: when the sampler needs a
    model) refits ``model`` on all confirmed labels before each round that has new ones.
    ``progress(labelled, budget)`` is called after every answer.
    """
    session = LabellingSession(dataset, store, sampler, budget, model=model, round_size=round_size,
                               retrain=retrain, background_retrain=background_retrain)
    return drive(session, oracle, progress)


def drive(session: LabellingSession, oracle: Oracle,
          progress: Callable[[int, int], None] | None = None) -> LabellingResult:
    """Run ``session`` with ``oracle`` until the budget, the sampler's end, or a quit."""
    try:
        while not session.finished:
            positions = session.next_round()
            if not len(positions):
                break
            given = 0
            with closing(iter(oracle.answers(positions, session))) as answers:
                for answer in answers:
                    session.record(answer, source=oracle.source)
                    given += 1
                    if progress is not None:
                        progress(session.done, session.budget)
                    if session.finished or (isinstance(answer.label, str) and answer.label == UNDO):
                        break
            if not given and not session.finished:
                raise Al4dstemError(f"the oracle {type(oracle).__name__} gave no answer for {len(positions)} "
                                    "position(s)")
    except QuitLabelling:
        session.stop("quit")
    except KeyboardInterrupt as stop:  # Ctrl-C, or a stop signal turned into one (labeller.Stopped)
        session.stop("quit", exit_code=getattr(stop, "exit_code", 130))
    return session.finish()
