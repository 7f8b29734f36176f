"""The `unknown` answer: the feature-similarity output that exports add, its calibration and the device rule."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeflower.edge import UNKNOWN, Classifier
from edgeflower.edge.backends import TensorInfo, main_output
from edgeflower.util.metrics import calibrate_scores, split_half_cost

from conftest import make_image, run_cli


def _keras_similarities(tiny_run, synth_data, synth_split, images):
    """Reference, in numpy: the cosine similarities (N, M) of the Keras model's pooled features to the training
    images' ones, and M."""
    from edgeflower.data.arrays import load_split
    from edgeflower.data.split import load_manifest
    from edgeflower.exporting import ood
    from edgeflower.training.loop import load_keras_model

    model = load_keras_model(tiny_run / "model.keras")
    train = load_split(synth_data, load_manifest(synth_split), "train", 32)
    bank = ood.compute_bank(model, train.x)
    f = ood.normalize(ood.features_model(model).predict_on_batch(images.astype(np.float32)))
    return f @ bank.T, train.y


def _kth(sims, k):
    return np.sort(sims, 1)[:, -k]


def _per_class(sims, labels, k):
    """(N, classes): the k-th largest similarity among each class's training images."""
    return np.stack([_kth(sims[:, labels == c], k) for c in range(int(labels.max()) + 1)], 1)


def _raw(clf, x):
    return np.concatenate([clf.raw_scores(x[i:i + 1])[1] for i in range(len(x))])


@pytest.fixture(scope="module")
def test_images(synth_data, synth_split):
    from edgeflower.data.arrays import load_split
    from edgeflower.data.split import load_manifest

    return load_split(synth_data, load_manifest(synth_split), "test", 32)


def _probe(test_images) -> np.ndarray:
    """The test photos plus a few unlike any training photo: the photos' nearest training photos are all about
    equally similar, these ones' are not, so only they tell the k-th neighbour from the nearest."""
    rng = np.random.default_rng(0)
    # blends of two classes' photos: their nearest training images come from both classes, so the k-th nearest of
    # the predicted class is not always the k-th nearest of all
    a, b = (test_images.x[np.nonzero(test_images.y == c)[0][:3]].astype(np.float32) for c in (0, 1))
    blends = np.concatenate([w * a + (1 - w) * b for w in (0.4, 0.5, 0.6)]).round().astype(np.uint8)
    return np.concatenate([test_images.x, rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8),
                           np.stack([np.full((32, 32, 3), v, np.uint8) for v in (0, 90, 160, 255)]), blends])


def test_artifacts_carry_the_similarity_output(tiny_export, tiny_run, synth_data, synth_split, test_images):
    from edgeflower.data.arrays import load_split
    from edgeflower.data.split import load_manifest

    x = _probe(test_images)
    sims_ref, labels = _keras_similarities(tiny_run, synth_data, synth_split, x)
    ref = _per_class(sims_ref, labels, 2)  # the export default: the 2nd-nearest training image of each class
    assert np.abs(_per_class(sims_ref, labels, 1) - ref).max() > 3 * 1e-4  # the data can tell k = 1 from 2
    for name, tol in (("model_float.tflite", 1e-4), ("model.onnx", 1e-4),
                      ("model_int8.tflite", 0.05), ("model_int8.onnx", 0.05)):
        clf = Classifier(tiny_export / name)
        assert clf.has_similarity and clf.similarity_width == 3, name
        # int8 artifacts on the photos only: their calibration never saw images like the extra probes
        n = len(x) if "int8" not in name else len(test_images)
        np.testing.assert_allclose(_raw(clf, x[:n]), ref[:n], atol=tol, err_msg=name)
        probs, sims = clf.score_batch(x[:n])
        assert probs.shape == (n, 3) and sims.shape == (n,)
        # the answer reads the value of the class the artifact itself predicts
        np.testing.assert_allclose(sims, ref[np.arange(n), probs.argmax(1)], atol=tol, err_msg=name)
        meta = json.loads((tiny_export / f"{name}.json").read_text())
        u = meta["unknown"]
        assert u["method"] == "knn_cosine_per_class" and u["per_class"] is True
        assert u["bank_size"] == len(labels) and u["neighbours"] == 2
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
    assert ("unknown, model_int8.tflite: similarity to the second-nearest training photo of the predicted class"
            in report)
    assert "-point budget on new photos (validation split halves, 500 splits): median" in report


def test_neighbours_and_any_class_options(tiny_run, synth_data, synth_split, test_images, tmp_path):
    """--unknown-neighbours 1 is the nearest photo of each class (a max); --unknown-neighbours 3 --unknown-any-class
    one similarity per image, the third nearest among all training images, which is not the predicted class's third
    on some of the probes. Both differ from the default (the second of each class)."""
    x = _probe(test_images)
    sims_ref, labels = _keras_similarities(tiny_run, synth_data, synth_split, x)
    # the checks below can only tell k apart where the k-th similarities differ by more than their tolerance
    assert np.abs(_per_class(sims_ref, labels, 1) - _per_class(sims_ref, labels, 2)).max() > 3 * 1e-4
    assert np.abs(_kth(sims_ref, 3) - _kth(sims_ref, 2)).max() > 3 * 1e-4
    for k, extra in ((1, []), (3, ["--unknown-any-class"])):
        out = run_cli("export", tiny_run, "--no-onnx", "--data", synth_data, "--split", synth_split,
                      "--max-drop", 100, "--unknown-neighbours", k, *extra, "--out", tmp_path / f"k{k}")
        assert out.returncode == 0, out.stderr
        clf = Classifier(tmp_path / f"k{k}" / "model_float.tflite")
        u = clf.metadata["unknown"]
        assert u["neighbours"] == k and u["per_class"] is not bool(extra)
        if not extra:
            np.testing.assert_allclose(_raw(clf, x), _per_class(sims_ref, labels, k), atol=1e-4)
            continue
        assert clf.similarity_width == 1 and u["method"] == "knn_cosine"
        probs, sims = clf.score_batch(x)
        np.testing.assert_allclose(sims, _kth(sims_ref, k), atol=1e-4)
        per_class = _per_class(sims_ref, labels, k)[np.arange(len(x)), probs.argmax(1)]
        assert np.abs(per_class - _kth(sims_ref, k)).max() > 3 * 1e-4  # the two rules differ on these probes


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
    from edgeflower.exporting.pipeline import ExportConfig, export

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

    from edgeflower.exporting.convert import _classifier_layer

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


def test_the_answer_reads_the_predicted_class_similarity():
    from edgeflower.edge.classifier import Smoother, select_similarity

    probs = np.array([[0.1, 0.7, 0.2], [0.4, 0.4, 0.2], [0.1, 0.2, 0.7]], np.float32)
    sims = np.array([[0.9, 0.3, 0.5], [0.2, 0.8, 0.6], [0.4, 0.5, 0.6]], np.float32)
    # the top class's value; of two tied classes the first (as Classifier.decide reports it)
    np.testing.assert_allclose(select_similarity(probs, sims), [0.3, 0.2, 0.6])
    np.testing.assert_allclose(select_similarity(probs, sims[:, :1]), [0.9, 0.2, 0.4])  # one value: as it is
    # a background class (the last, no column of its own) reads the highest value; it is answered unknown anyway
    np.testing.assert_allclose(select_similarity(probs, sims[:, :2]), [0.3, 0.2, 0.5])
    # smoothing averages every class's similarity, so the value read is the smoothed top class's
    sm = Smoother(2)
    sm.update(probs[0], sims[0])
    p, s = sm.update(probs[2], sims[2])
    np.testing.assert_allclose(s, (sims[0] + sims[2]) / 2)
    one = Smoother(2)
    one.update(probs[0], 0.25)
    assert one.update(probs[0], 0.75)[1] == 0.5  # a single similarity stays a float


def test_one_frames_similarity_and_order_agree_with_the_batch_rule():
    """classify reads a frame's values in plain Python (top_similarity, decide): the same answers as the vectorized
    select_similarity and a stable argsort, ties and the background column included."""
    from edgeflower.edge.classifier import select_similarity, top_similarity

    rng = np.random.default_rng(5)
    clf = Classifier.__new__(Classifier)  # decide needs the labels and the rule's settings only
    clf.labels, clf.top_k, clf.threshold, clf.min_similarity, clf.background = list("abcd"), 3, 0.0, 0.5, None
    for _ in range(300):
        probs = rng.integers(0, 4, (1, 4)).astype(np.float32) / 4  # coarse: many ties
        width = int(rng.choice([1, 3, 4]))  # one value, a background column without one, one per class
        sims = rng.random((1, width)).astype(np.float32)
        want = float(select_similarity(probs, sims)[0])
        assert top_similarity(probs[0].tolist(), sims[0].tolist()) == want
        order = np.argsort(-probs[0], kind="stable")
        label, score, top, topk = clf.decide(probs[0], want)
        assert top == order[0] and score == float(probs[0, order[0]])
        assert [lab for lab, _ in topk] == [clf.labels[i] for i in order[:3]]
        assert (label == UNKNOWN) == (want < 0.5)
