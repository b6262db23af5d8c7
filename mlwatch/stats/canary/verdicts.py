"""The verdict of one difference against its margin, and of a comparison as a whole.

With ``g`` the difference oriented so that positive is good (``B - A`` when higher is
better, ``A - B`` when lower is better), ``[L, U]`` its confidence sequence and
``delta >= 0`` the margin:

- ``better`` when ``L > delta``: the candidate is better by more than the margin;
- ``worse`` when ``U < -delta``: it is worse by more than the margin;
- ``no difference`` when ``-delta < L`` and ``U < delta``: any difference is within the
  margin (never with ``delta = 0``);
- ``not enough data`` below ``min_samples`` in either group, or when none of these holds
  yet (the sequence still straddles a margin).

>>> verdict(0.02, 0.04, 0.01, higher_is_better=True)
'better'
>>> verdict(0.02, 0.04, 0.01, higher_is_better=False)
'worse'
>>> verdict(-0.004, 0.006, 0.01, higher_is_better=True)
'no difference'
>>> verdict(-0.004, 0.016, 0.01, higher_is_better=True)
'not enough data'
"""

from __future__ import annotations

from collections.abc import Iterable

BETTER = "better"
WORSE = "worse"
NO_DIFFERENCE = "no difference"
NOT_ENOUGH_DATA = "not enough data"
VERDICTS = (WORSE, NOT_ENOUGH_DATA, NO_DIFFERENCE, BETTER)
#: The value of ``mlwatch_compare_verdict`` for each verdict (an enum-like gauge).
VERDICT_CODES = {WORSE: -1, NOT_ENOUGH_DATA: 0, NO_DIFFERENCE: 1, BETTER: 2}


def verdict(lower: float, upper: float, margin: float, *, higher_is_better: bool) -> str:
    """The verdict of the interval ``[lower, upper]`` of ``B - A`` against ``margin``."""
    lo, hi = (lower, upper) if higher_is_better else (-upper, -lower)
    if lo > margin:
        return BETTER
    if hi < -margin:
        return WORSE
    if -margin < lo and hi < margin:
        return NO_DIFFERENCE
    return NOT_ENOUGH_DATA


def overall(verdicts: Iterable[str]) -> str:
    """One verdict from the gated KPIs': ``worse`` if any is worse; else ``better`` if one
    is better and every other better or no different; ``no difference`` if all are;
    otherwise (one still undecided, or none gated) ``not enough data``.

    >>> overall(["better", "no difference"]), overall(["better", "worse"])
    ('better', 'worse')
    >>> overall(["better", "not enough data"]), overall([])
    ('not enough data', 'not enough data')
    """
    seen = list(verdicts)
    if WORSE in seen:
        return WORSE
    if not seen or NOT_ENOUGH_DATA in seen:
        return NOT_ENOUGH_DATA
    return BETTER if BETTER in seen else NO_DIFFERENCE
