"""benchmarks/outliers.py: the shares per category and species, seen and unseen species apart."""

from __future__ import annotations

from benchmarks.outliers import summarize


def test_summary_counts_categories_and_species_apart():
    rows = [{"file": f"n{i}", "kind": "nature", "category": "nature", "source": "a/b", "answer": "unknown",
             "unknown": i < 3, "by": "background" if i < 3 else ""} for i in range(4)]
    rows += [{"file": "p", "kind": "person", "category": "person", "source": "c/d", "answer": "unknown",
              "unknown": True, "by": "similarity"}]
    rows += [{"file": f"f{i}", "kind": "other_flowers", "category": sp, "source": "a/b", "answer": "roses",
              "unknown": ok, "by": ""} for i, (sp, ok) in enumerate([("lotus", True), ("lily", False),
                                                                      ("lily", True)])]
    s = summarize(rows, seen={"lotus"})
    assert s["non_flower"] == {"images": 5, "unknown": 0.8}  # flowers of other species are not counted here
    assert s["by_category"] == {"nature": {"images": 4, "unknown": 0.75}, "person": {"images": 1, "unknown": 1.0}}
    assert s["other_flowers_unseen_species"] == {"images": 2, "unknown": 0.5}
    assert s["other_flowers_seen_species"] == {"images": 1, "unknown": 1.0}
    assert s["by_rule"] == {"background": 0.6, "similarity": 0.2}
    assert [g["file"] for g in s["got_through"]] == ["n3", "f1"]
    assert s["by_source"]["c/d"] == {"images": 1, "unknown": 1.0}
