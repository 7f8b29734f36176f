"""The `unknown` answer: the feature-similarity output that exports add, its calibration and the device rule."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeflower.edge import UNKNOWN, Classifier
from edgeflower.edge.backends import TensorInfo, main_output
from edgeflower.metrics import calibrate_scores, split_half_cost

from conftest import make_image, run_cli


def _keras_similarities(tiny_run, synth_data, synth_split, images):
    """Reference, in numpy: the cosine similarities (N, M) of the Keras model's pooled features to the training
    images' ones, and M."""
    from edgeflower.data.arrays import load_split
    from edgeflower.data.split import load_manifest
    from edgeflower.export import ood
    from edgeflower.train.loop import load_keras_model

    model = load_keras_model(tiny_run / "model.keras")
    train = load_split(synth_data, load_manifest(synth_split), "train", 32)
    bank = ood.compute_bank(model, train.x)
    f = ood.normalize(ood.features_model(model).predict_on_batch(images.astype(np.float32)))
    return f @ bank.T, len(train)


def _kth(sims, k):
    return np.sort(sims, 1)[:, -k]


@pytest.fixture(scope="module")
def test_images(synth_data, synth_split):
    from edgeflower.data.arrays import load_split
    from edgeflower.data.split import load_manifest

    return load_split(synth_data, load_manifest(synth_split), "test", 32)


def _probe(test_images) -> np.ndarray:
    """The test photos plus a few unlike any training photo: the photos' nearest training photos are all about
    equally similar, these ones' are not, so only they tell the k-th neighbour from the nearest."""
    rng = np.random.default_rng(0)
    return np.concatenate([test_images.x, rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8),
                           np.stack([np.full((32, 32, 3), v, np.uint8) for v in (0, 90, 160, 255)])])


def test_artifacts_carry_the_similarity_output(tiny_export, tiny_run, synth_data, synth_split, test_images):
    from edgeflower.data.arrays import load_split
    from edgeflower.data.split import load_manifest

    x = _probe(test_images)
    sims_ref, n_train = _keras_similarities(tiny_run, synth_data, synth_split, x)
    assert np.abs(_kth(sims_ref, 1) - _kth(sims_ref, 2)).max() > 3 * 1e-4  # the data can tell k = 1 from 2
    ref = _kth(sims_ref, 2)  # the export default
    for name, tol in (("model_float.tflite", 1e-4), ("model.onnx", 1e-4),
                      ("model_int8.tflite", 0.05), ("model_int8.onnx", 0.05)):
        clf = Classifier(tiny_export / name)
        assert clf.has_similarity, name
        # int8 artifacts on the photos only: their calibration never saw images like the extra probes
        n = len(x) if "int8" not in name else len(test_images)
        probs, sims = clf.score_batch(x[:n])
        assert probs.shape == (n, 3) and sims.shape == (n,)
        np.testing.assert_allclose(sims, ref[:n], atol=tol, err_msg=name)
        meta = json.loads((tiny_export / f"{name}.json").read_text())
        u = meta["unknown"]
        assert u["method"] == "knn_cosine" and u["bank_size"] == n_train and u["neighbours"] == 2
        assert u["similarity_threshold"] == clf.min_similarity
        assert meta["confidence_threshold"] == clf.threshold == 0.0  # the confidence rule is off by default
        # the calibration rule held on the validation split
        cal = u["calibration"]
        assert cal["accuracy_without_rejection"] - cal["accuracy_with_rejection"] <= cal["budget"] + 1e-9
        # and what the budget costs on new photos, from the artifact's own validation scores
        val = load_split(synth_data, load_manifest(synth_split), "val", 32)
        vp, vs = clf.score_batch(val.x)
        assert cal["split_half"] is not None
        assert cal["split_half"] == split_half_cost(vp.argmax(1) == val.y, vs, val.y, cal["budget"]), name
    report = (tiny_export / "export_report.md").read_text()
    assert "unknown, model_int8.tflite: similarity to the second-nearest" in report
    assert "-point budget on new photos (validation split halves, 500 splits): median" in report


def test_neighbours_option_picks_the_kth_similarity(tiny_run, synth_data, synth_split, test_images, tmp_path):
    """--unknown-neighbours 1 is the nearest photo (max) and 3 the third; both differ from the default's second."""
    x = _probe(test_images)
    sims_ref, _ = _keras_similarities(tiny_run, synth_data, synth_split, x)
    # the check below can only tell k apart where the k-th similarities differ by more than its tolerance
    for a, b in ((1, 2), (2, 3), (1, 3)):
        assert np.abs(_kth(sims_ref, a) - _kth(sims_ref, b)).max() > 3 * 1e-4, (a, b)
    for k in (1, 3):
        out = run_cli("export", tiny_run, "--no-onnx", "--data", synth_data, "--split", synth_split,
                      "--max-drop", 100, "--unknown-neighbours", k, "--out", tmp_path / f"k{k}")
        assert out.returncode == 0, out.stderr
        clf = Classifier(tmp_path / f"k{k}" / "model_float.tflite")
        assert clf.metadata["unknown"]["neighbours"] == k
        np.testing.assert_allclose(clf.score_batch(x)[1], _kth(sims_ref, k), atol=1e-4)


def test_neighbours_beyond_the_bank_is_refused(tiny_run, synth_data, synth_split, tmp_path):
    out = run_cli("export", tiny_run, "--no-onnx", "--data", synth_data, "--split", synth_split,
                  "--unknown-neighbours", 100_000, "--out", tmp_path / "e")
    assert out.returncode != 0 and "between 1 and the" in out.stderr + out.stdout
    assert "Traceback" not in out.stderr


def test_far_photo_is_unknown_and_near_one_is_not(tiny_export, test_images):
    clf = Classifier(tiny_export / "model_float.tflite")
    p = clf.classify(test_images.x[0])
    assert p.similarity is not None
    strict = Classifier(tiny_export / "model_float.tflite", min_similarity=min(1.0, p.similarity + 1e-3))
    assert strict.classify(test_images.x[0]).label == UNKNOWN
    lax = Classifier(tiny_export / "model_float.tflite", min_similarity=-1.0)
    assert lax.classify(test_images.x[0]).label == clf.labels[p.index]
    assert "similarity" in p.to_dict()


def test_confidence_rule_still_exports_single_output(tiny_run, synth_data, synth_split, tmp_path):
    from edgeflower.export.pipeline import ExportConfig, export

    rep = export(ExportConfig(target=str(tiny_run), out=str(tmp_path / "e"), onnx=False, data=str(synth_data),
                              split=str(synth_split), max_drop=100.0, unknown="confidence"))
    art = rep["artifacts"][0]
    assert art["unknown"]["method"] == "confidence"
    clf = Classifier(art["path"])
    assert not clf.has_similarity and clf.min_similarity is None
    assert clf.threshold == art["confidence_threshold"] > 0
    with pytest.raises(Exception, match="no similarity output"):
        Classifier(art["path"], min_similarity=0.5)
    assert Classifier(art["path"], min_similarity=-1).min_similarity is None  # "off" is accepted everywhere


def test_probabilities_output_is_found_in_any_order():
    probs = TensorInfo("StatefulPartitionedCall:1", (1, 5), np.dtype(np.uint8), 1 / 256, 0)
    sim = TensorInfo("StatefulPartitionedCall:0", (1, 1), np.dtype(np.uint8), 1 / 256, 0)
    assert main_output([sim, probs]) == 1 and main_output([probs, sim]) == 0
    assert main_output([probs]) == 0


def test_calibrate_scores_keeps_the_budget():
    rng = np.random.default_rng(0)
    correct = rng.random(400) < 0.9
    score = np.where(correct, rng.normal(0.8, 0.1, 400), rng.normal(0.6, 0.1, 400))
    for budget in (0.0, 0.01, 0.05):
        cal = calibrate_scores(correct, score, budget)
        kept = score >= cal["threshold"]
        assert correct.mean() - (correct & kept).mean() <= budget + 1e-12
        # one step higher would break the budget (it is the largest such threshold)
        higher = np.unique(score[score > cal["threshold"]])
        if len(higher):
            assert correct.mean() - (correct & (score >= higher[0])).mean() > budget


def test_split_half_cost_measures_the_budget_on_the_other_half():
    rng = np.random.default_rng(0)
    n = 800
    strata = rng.integers(0, 4, n)
    correct = rng.random(n) < 0.9
    # correct photos with scores spread down to where the wrong ones are: the threshold's cost on unseen photos
    # scatters around the budget
    score = np.where(correct, rng.normal(0.8, 0.1, n), rng.normal(0.6, 0.1, n))
    sh = split_half_cost(correct, score, strata, 0.005, rounds=300)
    assert sh["half_size"] == sum(int((strata == c).sum()) // 2 for c in range(4))
    # on the half it was calibrated on the cost is at most the budget; on the other half it exceeds it often
    assert sh["p90_pts"] > 0.5 and sh["share_over_limit"] > 0.0
    assert 0.0 <= sh["median_pts"] < 1.5
    # every correct photo scores the same, above every wrong one: the threshold keeps them all on either half
    sep = np.where(correct, 1.0, rng.random(n))
    assert split_half_cost(correct, sep, strata, 0.005, rounds=50)["p90_pts"] == 0.0
    assert split_half_cost(correct[:6], score[:6], strata[:6], 0.005) is None


def test_onnx_final_layer_exclusion_finds_the_classifier(tiny_export):
    import onnx

    from edgeflower.export.convert import _classifier_layer

    model = onnx.load(str(tiny_export / "model.onnx"))
    names = _classifier_layer(model)
    nodes = {n.name: n for n in model.graph.node}
    assert any(nodes[n].op_type == "Softmax" for n in names)
    assert not any("ood_bank" in n for n in names)
    assert any(nodes[n].op_type in ("MatMul", "Gemm") for n in names)


def test_cli_classify_reports_similarity_and_override(tiny_export, tmp_path):
    img_dir = tmp_path / "imgs"
    img_dir.mkdir()
    make_image((40, 60, 200), size=(32, 32), seed=5).save(img_dir / "a.jpg")
    out = tmp_path / "p.jsonl"
    r = run_cli("classify", tiny_export / "model_int8.tflite", "--images", img_dir, "--jsonl", out, "--quiet")
    assert r.returncode == 0, r.stderr
    rec = json.loads(out.read_text().splitlines()[0])
    assert "similarity" in rec
    r = run_cli("classify", tiny_export / "model_float.tflite", "--images", img_dir, "--jsonl", out, "--quiet",
                "--min-similarity", "1")
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text().splitlines()[0])["label"] == UNKNOWN
