"""The field's referring-segmentation metrics (as in the RRSIS/RMSIN test scripts).

Over samples with a referent: IoU per expression = |P∧G| / |P∨G|; mIoU = mean IoU; oIoU =
ΣI / ΣU; Prec@X = share of expressions with IoU ≥ X (IoU > X where a family's authors count
so: :data:`DEFINITIONS`). Samples whose expression refers to
nothing are scored apart: presence accuracy = share of them with an empty prediction.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass(frozen=True)
class MetricDefinition:
    """How one family's authors count: ``strict`` Prec@X counts IoU > X (else IoU ≥ X)."""

    name: str
    source: str
    strict: bool


DEFINITIONS = {d.name: d for d in (
    MetricDefinition("rrsis", "LAVT/RMSIN test.py: Prec@X counts IoU ≥ X", strict=False),
    MetricDefinition("rsrefseg2", "RSRefSeg 2's RefSegIoUMetric: Prec@X counts IoU > X; mIoU is their gIoU, "
                                  "oIoU their cIoU, class mIoU their per-category mean_iou", strict=True),
)}


@dataclass
class MetricAccumulator:
    definition: str = "rrsis"  # a key of DEFINITIONS
    ious: list[float] = field(default_factory=list)
    inter: int = 0
    union: int = 0
    no_target_correct: int = 0
    no_target_total: int = 0
    target_found: int = 0  # samples with a referent where the prediction is not empty
    by_kind: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def add(self, pred: np.ndarray, target: np.ndarray, kinds: list[str] | tuple = ()) -> float | None:
        """Score one prediction (bool masks); returns its IoU, or None for a no-target sample."""
        if not target.any():
            self.no_target_total += 1
            self.no_target_correct += int(not pred.any())
            return None
        i = int(np.logical_and(pred, target).sum())
        u = int(np.logical_or(pred, target).sum())
        iou = i / u if u else 0.0
        self.ious.append(iou)
        self.inter += i
        self.union += u
        self.target_found += int(pred.any())
        for kind in kinds:
            self.by_kind[kind].append(iou)
        return iou

    def result(self) -> dict:
        n = len(self.ious)
        ious = np.asarray(self.ious, float)
        out: dict = {
            "mIoU": float(ious.mean()) if n else 0.0,
            "oIoU": self.inter / self.union if self.union else 0.0,
        }
        strict = DEFINITIONS[self.definition].strict
        for t in THRESHOLDS:
            out[f"prec@{t}"] = float(((ious > t) if strict else (ious >= t)).mean()) if n else 0.0
        out["n_target"] = n
        out["n_no_target"] = self.no_target_total
        out["presence_acc_no_target"] = (self.no_target_correct / self.no_target_total
                                         if self.no_target_total else None)
        total = n + self.no_target_total
        out["presence_acc"] = ((self.target_found + self.no_target_correct) / total) if total else None
        out["mIoU_by_kind"] = {k: float(np.mean(v)) for k, v in sorted(self.by_kind.items())}
        out["class_mIoU"] = float(np.mean(list(out["mIoU_by_kind"].values()))) if self.by_kind else None
        out["definition"] = DEFINITIONS[self.definition].source
        return out


def markdown_table(metrics: dict, title: str = "") -> str:
    """The headline numbers as a markdown table (percentages, as the papers print them)."""
    keys = ["mIoU", "oIoU", *[f"prec@{t}" for t in THRESHOLDS], "presence_acc_no_target"]
    heads = [k.replace("presence_acc_no_target", "no-target acc") for k in keys]
    cells = ["–" if metrics.get(k) is None else f"{100 * metrics[k]:.2f}" for k in keys]
    lines = [f"**{title}**", ""] if title else []
    lines += ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads), "| " + " | ".join(cells) + " |"]
    lines.append(f"\n{metrics['n_target']} expressions with a referent, "
                 f"{metrics['n_no_target']} without; counted as in {metrics['definition']}.")
    if metrics.get("mIoU_by_kind"):
        lines += ["", "| words used | mIoU |", "|---|---|"]
        lines += [f"| {k} | {100 * v:.2f} |" for k, v in metrics["mIoU_by_kind"].items()]
    return "\n".join(lines)
