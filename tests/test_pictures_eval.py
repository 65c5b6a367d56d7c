"""`evaluate --images`: a model scored on folders (or a CSV) of labelled pictures, read as `predict`
reads them, with the sure and unsure answers counted apart and unreadable pictures listed."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from conftest import REPO
from mnistctl.cli.commands import app

ASSETS = REPO / "assets"
runner = CliRunner()


@pytest.fixture()
def labelled(tmp_path):
    """Six readable pictures in class folders, one of them filed under the wrong class (a 4 in 9/),
    and a broken file."""
    root = tmp_path / "mine"
    for label, name in [("7", "digit-7-photo.jpg"), ("4", "digit-4-paint.png"), ("2", "digit-2-transparent.png"),
                        ("3", "digit-3-mnist.png"), ("9", "digit-4-paint.png")]:
        (root / label).mkdir(parents=True, exist_ok=True)
        shutil.copy(ASSETS / name, root / label / name)
    shutil.copy(ASSETS / "digit-7-photo.jpg", root / "7" / "again.jpg")
    (root / "1").mkdir()
    (root / "1" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return root


def test_a_folder_of_class_folders_is_scored_as_predict_reads_it(labelled):
    result = runner.invoke(app, ["evaluate", "--images", str(labelled), "--json", "--jobs", "1"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["split"] == "pictures" and doc["pictures"] == str(labelled) and doc["checkpoint"] is None
    assert doc["images"] == 6 and doc["accuracy"] == pytest.approx(5 / 6)
    [mistake] = doc["mistakes"]
    assert mistake["path"].endswith("9/digit-4-paint.png") and doc["classes"][mistake["true"]] == "9"
    assert doc["classes"][mistake["predicted"]] == "4"
    assert doc["sure"]["images"] + doc["unsure"]["images"] == 6
    assert doc["sure"]["right"] + doc["unsure"]["right"] == 5
    assert doc["mistakes_marked_unsure"] == int(mistake["unsure"])
    [bad] = doc["unreadable"]
    assert bad["path"].endswith("1/broken.png") and "not an image" in bad["error"]
    assert doc["per_class"][7]["support"] == 2 and doc["confusion"][9][4] == 1


def test_a_csv_of_labels_gives_the_same_scores_and_python_the_same_document(labelled, tmp_path):
    import mnistctl

    rows = ["path,label"] + [f"{p.relative_to(labelled)},{p.parent.name}" for p in sorted(labelled.rglob("*.*"))]
    (labelled / "labels.csv").write_text("\n".join(rows) + "\n")
    by_csv = json.loads(runner.invoke(app, ["evaluate", "--images", str(labelled / "labels.csv"), "--json"]).stdout)
    by_folder = json.loads(runner.invoke(app, ["evaluate", "--images", str(labelled), "--json"]).stdout)
    for key in ("images", "accuracy", "confusion", "sure", "unsure", "mistakes_marked_unsure"):
        assert by_csv[key] == by_folder[key], key
    scored = mnistctl.evaluate_pictures("builtin", labelled).to_dict()
    for key in ("images", "accuracy", "confusion", "per_class", "sure", "unsure", "unreadable", "mistakes"):
        assert scored[key] == by_folder[key], key


def test_the_table_says_how_right_sure_and_unsure_answers_are(labelled, tmp_path):
    result = runner.invoke(app, ["evaluate", "--images", str(labelled), "--plots", str(tmp_path / "figs")])
    assert result.exit_code == 0, result.output
    assert "pictures accuracy 83.33% (5/6)" in result.output and "sure answers" in result.output
    assert "1 could not be read" in result.output and "Per class" in result.output
    assert (tmp_path / "figs" / "confusion.png").is_file() and (tmp_path / "figs" / "mistakes.png").is_file()


@pytest.mark.parametrize("make, words", [
    (lambda root: (root / "seven").mkdir(parents=True), "the folder 'seven'"),
    (lambda root: root.mkdir(), "has no sub-folders"),
    (lambda root: (root.mkdir(), (root / "labels.csv").write_text("a.png,x\n")), "the label 'x' is not a class"),
    (lambda root: (root.mkdir(), (root / "labels.csv").write_text("only-a-path.png\n")), "needs a path and a label"),
])
def test_bad_labels_get_one_clear_line(tmp_path, make, words):
    root = tmp_path / "bad"
    make(root)
    target = root / "labels.csv" if (root / "labels.csv").exists() else root
    result = runner.invoke(app, ["evaluate", "--images", str(target)])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert words in result.output and "--images" in result.output, result.output
