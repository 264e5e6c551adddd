"""The machine protocol: the events a run emits, declared once.

Programs (the QGIS plugin, scripts) drive georefseg through its CLI: ``--progress json``
writes these events, one JSON object per line, on stderr. Every event is built here, so its
fields are the same wherever it comes from (the Segmenter, the CLI, batch mapping, a Dask
worker). The ``started`` event carries :data:`PROTOCOL_VERSION`, which a reader checks, and
the run's phases; every ``phase`` and ``tiles`` event carries ``text`` (what a person would be
told) and ``progress`` (0–1 of the whole run), so a reader needs to know no phase by name.

Version 1: events ``started``, ``reading``, ``phase``, ``tiles``, ``cluster``, ``finished``,
``error``; batch mapping adds ``batch``, ``scene``, ``job``, ``merged`` and its own
``finished``; training adds ``step`` and ``validated``.
"""

from __future__ import annotations

from dataclasses import dataclass

PROTOCOL_VERSION = 1


@dataclass(frozen=True)
class Phase:
    """One stage of a run: its name, what it does in words, and where it starts on a 0–1 bar."""

    name: str
    text: str
    start: float


# In the order a run goes through them; tiles fill the stretch from "infer" to the next phase,
# which is where nearly all the time goes.
PHASES: tuple[Phase, ...] = (
    Phase("load", "loading the model", 0.02),
    Phase("open", "opening the scene", 0.08),
    Phase("infer", "segmenting tiles", 0.10),
    Phase("vectorize", "tracing polygons", 0.92),
    Phase("ground", "choosing the referent", 0.95),
    Phase("write", "writing the output", 0.97),
)
_BY_NAME = {p.name: i for i, p in enumerate(PHASES)}
TILE_PHASE = "infer"


def phase(name: str, **fields) -> dict:
    """A stage begins (``name`` from :data:`PHASES`); ``fields`` add detail (``phrases``, ``model``)."""
    p = PHASES[_BY_NAME[name]]
    return {"event": "phase", "phase": name, "text": p.text, "progress": p.start, **fields}


def tiles(done: int, total: int) -> dict:
    """``done`` of ``total`` tiles are blended."""
    i = _BY_NAME[TILE_PHASE]
    lo, hi = PHASES[i].start, PHASES[i + 1].start
    return {"event": "tiles", "done": done, "total": total, "text": f"{PHASES[i].text}: {done}/{total}",
            "progress": round(lo + (hi - lo) * done / max(total, 1), 4)}


def started(scene: str, expression: str, output: str | None, probability: str | None, model: str) -> dict:
    """A ``segment`` run begins: what it maps, where it writes, with the protocol's version and phases."""
    return {"event": "started", "protocol": PROTOCOL_VERSION, "scene": scene, "expression": expression,
            "output": output, "probability": probability, "model": model,
            "phases": [{"name": p.name, "text": p.text, "start": p.start} for p in PHASES], "progress": 0.0}


def reading(query: dict) -> dict:
    """How the expression was read (:meth:`georefseg.expression.Query.to_dict`)."""
    return {"event": "reading", **query}


def cluster(dashboard: str) -> dict:
    """The run's tiles go to a Dask cluster, whose dashboard is at ``dashboard``."""
    return {"event": "cluster", "dashboard": dashboard}


def finished(feature_count: int, output: str | None, probability: str | None, message: str | None,
             total_s: float) -> dict:
    """A ``segment`` run ended and its outputs are in place."""
    return {"event": "finished", "feature_count": feature_count, "output": output, "probability": probability,
            "message": message, "total_s": total_s, "progress": 1.0}


def error(message: str, exit_code: int) -> dict:
    """A run stopped: ``message`` is the one line a person reads, ``exit_code`` the process's."""
    return {"event": "error", "message": message, "exit_code": exit_code}


# --- batch mapping ---------------------------------------------------------------------------

def batch(jobs: int, to_run: int, skipped: int, workers: int | None, dashboard: str | None) -> dict:
    """A batch begins: its jobs, those to run now and those finished before."""
    return {"event": "batch", "protocol": PROTOCOL_VERSION, "jobs": jobs, "to_run": to_run, "skipped": skipped,
            "workers": workers, "dashboard": dashboard}


def scene(scene_id: str, expression: str, event: dict) -> dict:
    """One job's engine event (``phase`` or ``tiles``), relayed; ``kind`` says which."""
    inner = {k: v for k, v in event.items() if k != "event"}
    return {"event": "scene", "scene": scene_id, "expression": expression, "kind": event.get("event"), **inner}


def job(scene_id: str, expression: str, done: int, total: int, result: dict, worker_losses: int) -> dict:
    """One job ended, done or failed (``error``)."""
    return {"event": "job", "scene": scene_id, "expression": expression, "done": done, "total": total,
            "status": "failed" if "error" in result else "done", "features": result.get("features"),
            "error": result.get("error"), "worker": result.get("worker"), "worker_losses": worker_losses}


def merged(features: int, output: str) -> dict:
    """The merged layer is written."""
    return {"event": "merged", "features": features, "output": output}


def batch_finished(report: dict) -> dict:
    """A batch ended; ``report`` is :meth:`georefseg.batch.BatchReport.to_dict`."""
    return {"event": "finished", **report}


def step(pace: dict) -> dict:
    """One training step taken; ``pace`` is what :func:`georefseg.training.train` reports
    (step, total, epoch, loss, lr, samples_per_s, eta_s in seconds)."""
    return {"event": "step", **pace, "progress": pace["step"] / pace["total"],
            "text": f"step {pace['step']}/{pace['total']}: loss {pace['loss']:.4f}, lr {pace['lr']:.2e}, "
                    f"{pace['samples_per_s']:.2f} samples/s"}


def validated(step_done: int, metrics: dict) -> dict:
    """Validation after ``step_done`` steps: the field's metrics (mIoU, oIoU, prec@X, samples)."""
    shown = ", ".join(f"{k} {metrics[k]:.3f}" for k in ("mIoU", "oIoU", "prec@0.5") if k in metrics)
    return {"event": "validated", "step": step_done, "metrics": metrics, "text": f"step {step_done}: val {shown}"}
