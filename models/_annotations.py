"""Clusters out for human annotation, annotations back in: the data of the paper's fine-tuning.

The paper fine-tunes its judge on 1,772 clusters annotated Good/Bad and its namer on
2,500 named clusters (§6.1). This module writes clusters to a JSONL file people can
label in any editor or labelling tool, and reads the labelled file back, validated line
by line, for :mod:`dialin.models.finetune`.

File format (UTF-8 JSONL, one cluster per line)::

    {"id": "c0017", "task": "judge", "texts": ["when will my card arrive", ...],
     "parts": [], "label": null, "suggestion": "Good"}

* ``id``: any string, unique per task in the file.
* ``task``: ``judge`` (label ``Good`` or ``Bad``) or ``name`` (label an
  ``action-objective`` string such as ``inquire-card_arrival`` or ``询问-优惠``).
* ``texts``: the sentences shown, as the LLM will see them (non-empty list of strings).
* ``parts``: optional; for a union question, the two groups (then ``texts`` may be empty).
* ``label``: ``null`` until annotated. Lines still ``null`` are skipped on import, with
  an :class:`AnnotationWarning` saying how many.
* ``suggestion``: optional; what a model answered, to speed annotators up (never read
  as a label).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ._base import ClusterView, Intent
from .llm._prompts import (
    judge_messages,
    load_prompt,
    name_messages,
    parse_label,
    parse_verdict,
    resolve_language,
    view_texts,
)

ANNOTATION_TASKS = ("judge", "name")


class AnnotationError(ValueError):
    """An annotation file line is malformed; the message names the file and line."""


class AnnotationWarning(UserWarning):
    """Some clusters in an annotation file are not labelled yet and were skipped."""


@dataclass(frozen=True)
class Annotation:
    """One labelled cluster. ``label`` is normalised (``Good``/``Bad`` or a clean label)."""

    id: str
    task: str
    texts: tuple[str, ...]
    label: str
    parts: tuple[tuple[str, ...], ...] = ()

    def view(self) -> ClusterView:
        return ClusterView(members=tuple(range(len(self.texts))), texts=self.texts,
                           parts=self.parts)

    def messages(self, language: str = "auto", prompt_dir: str | None = None) -> list[dict]:
        """The chat a fine-tuned model learns: the very prompt the backends send, then the label."""
        view = self.view()
        lang = resolve_language(language, view_texts(view))
        template = load_prompt(self.task, lang, prompt_dir)
        build = judge_messages if self.task == "judge" else name_messages
        return [*build(template, view), {"role": "assistant", "content": self.label}]


def _texts_of(cluster) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    if isinstance(cluster, ClusterView):
        return tuple(cluster.texts), tuple(tuple(p) for p in cluster.parts)
    if isinstance(cluster, Intent):
        return tuple(cluster.examples), ()
    if isinstance(cluster, Sequence) and not isinstance(cluster, str):
        return tuple(str(t) for t in cluster), ()
    raise TypeError(f"cannot export {type(cluster).__name__}: give ClusterView, Intent or texts")


def export_annotations(path: str | Path, clusters: Sequence, task: str = "judge",
                       ids: Sequence[str] | None = None,
                       suggestions: Sequence[str | None] | None = None) -> int:
    """Write ``clusters`` (ClusterViews, Intents or lists of texts) for annotation; returns lines.

    ``task="both"`` writes every cluster twice, once per task.
    """
    tasks = ANNOTATION_TASKS if task == "both" else (task,)
    if any(t not in ANNOTATION_TASKS for t in tasks):
        raise ValueError(f"task must be judge, name or both, got {task!r}")
    clusters = list(clusters)
    if ids is not None and len(ids) != len(clusters):
        raise ValueError(f"{len(ids)} ids for {len(clusters)} clusters")
    if suggestions is not None and len(suggestions) != len(clusters):
        raise ValueError(f"{len(suggestions)} suggestions for {len(clusters)} clusters")
    n = 0
    with Path(path).open("w", encoding="utf-8") as out:
        for i, cluster in enumerate(clusters):
            texts, parts = _texts_of(cluster)
            for t in tasks:
                row = {"id": str(ids[i]) if ids is not None else f"c{i:05d}", "task": t,
                       "texts": list(texts), "parts": [list(p) for p in parts], "label": None}
                if suggestions is not None and suggestions[i] is not None:
                    row["suggestion"] = suggestions[i]
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
                n += 1
    return n


def _str_list(value, where: str, field: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise AnnotationError(f"{where}: {field} must be a list of strings")
    return tuple(value)


def _parse_line(line: str, where: str) -> Annotation | None:
    try:
        row = json.loads(line)
    except ValueError as exc:
        raise AnnotationError(f"{where}: not valid JSON ({exc.msg})") from None
    if not isinstance(row, dict):
        raise AnnotationError(f"{where}: each line must be a JSON object")
    task = row.get("task")
    if task not in ANNOTATION_TASKS:
        raise AnnotationError(f"{where}: task must be judge or name, got {task!r}")
    if not isinstance(row.get("id"), str | int):
        raise AnnotationError(f"{where}: id must be a string")
    texts = _str_list(row.get("texts", []), where, "texts")
    parts = tuple(_str_list(p, where, "parts") for p in row.get("parts") or [])
    if not texts and len(parts) < 2:
        raise AnnotationError(f"{where}: texts is empty")
    raw = row.get("label")
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise AnnotationError(f"{where}: label must be a string or null")
    if task == "judge":
        verdict = parse_verdict(raw)
        if verdict is None:
            raise AnnotationError(f"{where}: judge label must be Good or Bad, got {raw!r}")
        label = "Good" if verdict else "Bad"
    else:
        label = parse_label(raw)
        if label is None:
            raise AnnotationError(f"{where}: name label must look like action-objective, got {raw!r}")
    return Annotation(id=str(row["id"]), task=task, texts=texts, label=label, parts=parts)


def load_annotations(path: str | Path, task: str | None = None) -> list[Annotation]:
    """Read and validate an annotated file; unlabelled lines are skipped with a warning.

    Raises :class:`AnnotationError` (file and line named) for a malformed line or a
    duplicate ``(task, id)``; ``task`` keeps only that task's annotations.
    """
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"annotation file not found: {path}")
    out: list[Annotation] = []
    seen: set[tuple[str, str]] = set()
    unlabelled = 0
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            annotation = _parse_line(line, where)
            if annotation is None:
                unlabelled += 1
                continue
            key = (annotation.task, annotation.id)
            if key in seen:
                raise AnnotationError(f"{where}: duplicate id {annotation.id!r} for task {annotation.task}")
            seen.add(key)
            if task is None or annotation.task == task:
                out.append(annotation)
    if unlabelled:
        warnings.warn(f"{unlabelled} clusters in {path} have no label yet and were skipped",
                      AnnotationWarning, stacklevel=2)
    return out
