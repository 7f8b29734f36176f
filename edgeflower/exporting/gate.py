"""The export's one decision rule: does an artifact keep the accuracy of the float model it came from?

Used by the gate, ``--auto``, ``--mixed-precision`` and ``--max-drop`` alike, always on the **validation** split
(the photos the remedies may look at); the test split's figure is reported beside it, never decided on.

The rule compares the artifact with the float model photo by photo (a paired comparison, as McNemar's test):
of n photos, the float model is right and the artifact wrong on ``lost`` of them, the other way round on
``gained``. The drop is (lost - gained) / n and its standard error sqrt(lost + gained - (lost - gained)^2 / n) / n.
An artifact **fails** when

- its drop is clearly over ``max_drop``: more than one standard error over it (the drop minus one standard error,
  a one-sided 84% lower bound, is above ``max_drop`` points); a drop within the noise of n photos passes (with 251
  photos one photo is 0.4 points, and three lost photos are not evidence of a 1-point loss); or
- it changes clearly more answers than a faithful conversion does: the one-sided 95% lower bound (Wilson) of the
  share of photos whose answer changed is above ``max_changed`` (10% by default; int8 conversions of the
  project's models change 1-4%).

With many photos the bound approaches the point estimate, and the rule becomes the usual "drop <= max_drop".
One standard error, not the textbook 1.645: measured by resampling real exports (benchmarks/gate.py,
docs/export.md), it fails under 1% of faithful int8 conversions, against 19% for the test split's point
estimate on a 6-class set, and passes half as many artifacts that are 2 points over the budget as 1.645 does.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

Z = 1.0  # the drop's margin: one standard error (a one-sided 84% bound)
Z_CHANGED = 1.6449  # the changed answers' bound: one-sided 95%
MAX_CHANGED = 0.10


@dataclass(frozen=True)
class Verdict:
    passed: bool
    photos: int
    reference_accuracy: float
    accuracy: float
    drop_pts: float  # the point estimate on these photos
    stderr_pts: float
    drop_lower_pts: float  # the drop minus Z standard errors
    max_drop_pts: float
    lost: int  # photos the float model gets right and the artifact wrong
    gained: int  # the other way round
    agreement: float  # share of photos with the float model's answer
    changed_lower: float  # the one-sided 95% lower bound (Wilson) of the share of changed answers
    max_changed: float
    reason: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        """One line: what was measured, against what."""
        return (f"drop {self.drop_pts:+.2f} pts on {self.photos} validation photos ({self.lost} lost, "
                f"{self.gained} gained; less one standard error {self.drop_lower_pts:+.2f}, against --max-drop "
                f"{self.max_drop_pts:g}), {self.agreement * 100:.1f}% agree with the float model")


def wilson_lower(k: int, n: int, z: float = Z_CHANGED) -> float:
    """One-sided lower confidence bound of a proportion k/n (Wilson score)."""
    if n == 0:
        return 0.0
    p = k / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - spread) / (1 + z * z / n))


def judge(ref_correct, art_correct, ref_pred, art_pred, max_drop_pts: float, max_changed: float = MAX_CHANGED,
          z: float = Z) -> Verdict:
    """The verdict on one artifact from per-photo answers on the same photos: whether the float model and the
    artifact are right (``*_correct``) and what they answered (``*_pred``)."""
    ref_correct = np.asarray(ref_correct, bool)
    art_correct = np.asarray(art_correct, bool)
    n = len(ref_correct)
    if n == 0 or len(art_correct) != n or len(ref_pred) != n or len(art_pred) != n:
        raise ValueError(f"judge needs the same photos on both sides, got {n} and {len(art_correct)}")
    lost = int((ref_correct & ~art_correct).sum())
    gained = int((~ref_correct & art_correct).sum())
    drop = (lost - gained) / n
    se = math.sqrt(max(0.0, lost + gained - (lost - gained) ** 2 / n)) / n
    lower = drop - z * se
    changed = int((np.asarray(ref_pred) != np.asarray(art_pred)).sum())
    changed_lower = wilson_lower(changed, n)
    reasons = []
    if lower * 100 > max_drop_pts + 1e-9:
        margin = "one standard error" if z == 1 else f"{z:g} standard errors"
        reasons.append(f"accuracy drop {drop * 100:.2f} pts on {n} validation photos, clearly over "
                       f"{max_drop_pts:g} (less {margin}: {lower * 100:.2f})")
    if changed_lower > max_changed:
        reasons.append(f"{changed} of {n} answers changed ({changed / n * 100:.1f}%), clearly more than "
                       f"{max_changed * 100:g}%")
    return Verdict(passed=not reasons, photos=n, reference_accuracy=float(ref_correct.mean()),
                   accuracy=float(art_correct.mean()), drop_pts=drop * 100, stderr_pts=se * 100,
                   drop_lower_pts=lower * 100, max_drop_pts=max_drop_pts, lost=lost, gained=gained,
                   agreement=1 - changed / n, changed_lower=changed_lower, max_changed=max_changed,
                   reason="; ".join(reasons))
