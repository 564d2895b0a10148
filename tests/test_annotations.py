"""Export clusters for annotation, import the labelled file, validated."""

from __future__ import annotations

import json

import pytest

from dialin.models import (
    AnnotationError,
    AnnotationWarning,
    ClusterView,
    Intent,
    export_annotations,
    load_annotations,
)


def test_export_then_import_after_labelling(tmp_path):
    path = tmp_path / "clusters.jsonl"
    clusters = [
        ClusterView(members=(0, 1), texts=("when will my card arrive", "card not here")),
        Intent(intent_id=3, label="x", members=(2, 3), examples=("我想问一下优惠", "有什么优惠券")),
        ClusterView(members=(4, 5), texts=(), parts=(("I lost my card",), ("card stolen",))),
    ]
    assert export_annotations(path, clusters, task="both", suggestions=["Good", None, None]) == 6
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [r["task"] for r in rows] == ["judge", "name"] * 3
    assert all(r["label"] is None for r in rows) and rows[0]["suggestion"] == "Good"
    assert "suggestion" not in rows[2] and rows[4]["parts"] == [["I lost my card"], ["card stolen"]]

    labels = ["good", "Inquire - card arrival", "Bad", "询问-优惠", None, None]
    for row, label in zip(rows, labels):
        row["label"] = label
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    with pytest.warns(AnnotationWarning, match="2 clusters"):
        annotations = load_annotations(path)
    assert [(a.task, a.label) for a in annotations] == [
        ("judge", "Good"), ("name", "inquire-card_arrival"), ("judge", "Bad"), ("name", "询问-优惠")]
    assert annotations[1].texts == ("when will my card arrive", "card not here")
    with pytest.warns(AnnotationWarning):
        assert [a.task for a in load_annotations(path, task="judge")] == ["judge", "judge"]


def test_the_training_chat_is_the_prompt_the_backends_send_plus_the_answer(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps({"id": "1", "task": "judge", "texts": ["a", "b"], "label": "Good"}) + "\n")
    (annotation,) = load_annotations(path)
    messages = annotation.messages()
    assert [m["role"] for m in messages] == ["system", "user", "assistant"]
    assert messages[-1]["content"] == "Good" and '1. "a"' in messages[1]["content"]


@pytest.mark.parametrize("line, message", [
    ("not json", "not valid JSON"),
    ('{"id": "1", "task": "rate", "texts": ["a"], "label": "Good"}', "task must be"),
    ('{"id": "1", "task": "judge", "texts": [], "label": "Good"}', "texts is empty"),
    ('{"id": "1", "task": "judge", "texts": ["a", 3], "label": "Good"}', "list of strings"),
    ('{"id": "1", "task": "judge", "texts": ["a"], "label": "Probably good"}', "Good or Bad"),
    ('{"id": "1", "task": "name", "texts": ["a"], "label": "a label with no hyphen"}', "action-objective"),
    ('{"id": "1", "task": "name", "texts": ["a"], "label": 5}', "string or null"),
])
def test_a_bad_line_is_a_one_line_error_naming_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    good = json.dumps({"id": "0", "task": "judge", "texts": ["x"], "label": "Bad"})
    path.write_text(good + "\n\n" + line + "\n")
    with pytest.raises(AnnotationError, match=message) as info:
        load_annotations(path)
    assert str(info.value).startswith(f"{path}:3:") and "\n" not in str(info.value)


def test_duplicates_and_missing_files_are_errors(tmp_path):
    path = tmp_path / "dup.jsonl"
    row = json.dumps({"id": "7", "task": "judge", "texts": ["x"], "label": "Bad"})
    path.write_text(row + "\n" + row + "\n")
    with pytest.raises(AnnotationError, match="duplicate"):
        load_annotations(path)
    with pytest.raises(AnnotationError, match="not found"):
        load_annotations(tmp_path / "missing.jsonl")
    with pytest.raises(ValueError, match="task"):
        export_annotations(tmp_path / "x.jsonl", [["a"]], task="rate")
