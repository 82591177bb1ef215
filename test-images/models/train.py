"""Train two small MLP classifiers and export them, by hand, as plain-op ONNX fixtures.

Usage: run `./regen.sh` (it builds a pinned virtualenv from requirements.txt), or,
inside an environment that has exactly those versions, `python3 train.py [--out DIR]`
(DIR defaults to this script's own directory). The data are the datasets bundled
inside the scikit-learn wheel, so nothing is downloaded. The script writes
breast_cancer_mlp.onnx, digits_mlp.onnx, breast_cancer_holdout.csv,
digits_holdout.csv and models.json, but only after checking every exported model
with onnx.checker and onnxruntime against scikit-learn on the held-out rows.
Two runs with the same pinned versions give byte-identical files.
"""

import os

# Single-threaded BLAS/OpenMP so that training arithmetic is the same on every run.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
             "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import csv  # noqa: E402
import hashlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from importlib import metadata  # noqa: E402

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

PRODUCER = "triage test-images/models/train.py"
OPSET = 13
IR_VERSION = 8
INPUT_NAME = "input"
OUTPUT_NAME = "probabilities"
SEED = 0
TEST_SIZE = 0.25
HERE = os.path.dirname(os.path.abspath(__file__))

# name, loader, dataset id, integer-valued features, human description
DATASETS = [
    ("breast_cancer", load_breast_cancer, "wisconsin-diagnostic-breast-cancer", False,
     "Wisconsin Diagnostic Breast Cancer: 30 features of digitised FNA images"),
    ("digits", load_digits, "uci-optical-digits-8x8", True,
     "UCI optical recognition of handwritten digits: 8x8 images, values 0..16"),
]


def check_versions():
    """Warn when the installed versions differ from requirements.txt (bytes may then differ)."""
    req = os.path.join(HERE, "requirements.txt")
    if not os.path.exists(req):
        return
    with open(req, encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if "==" not in line:
                continue
            name, want = (s.strip() for s in line.split("==", 1))
            try:
                have = metadata.version(name)
            except metadata.PackageNotFoundError:
                have = None
            if have != want:
                print(f"warning: {name} {have} installed, requirements.txt pins {want}; "
                      "outputs may not be byte-identical to the committed fixtures",
                      file=sys.stderr)


def load(loader):
    """Features as float32 (what the ONNX model and the CSV carry), targets, class names."""
    data = loader()
    x = np.asarray(data.data, dtype=np.float32)
    y = np.asarray(data.target)
    labels = [str(n) for n in data.target_names]
    return x, y, labels


def train(x, y):
    """Stratified split and a standardised MLP; trained on the float32 values, widened."""
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=TEST_SIZE, random_state=SEED, stratify=y)
    model = make_pipeline(
        StandardScaler(),
        # alpha=1.0: strong L2 penalty; these sets have only 426 / 1347 training rows.
        MLPClassifier(hidden_layer_sizes=(32,), alpha=1.0, random_state=SEED, max_iter=2000),
    )
    model.fit(x_train.astype(np.float64), y_train)
    mlp = model[-1]
    if mlp.n_iter_ >= mlp.max_iter:
        raise SystemExit(f"MLP did not converge in {mlp.max_iter} iterations")
    return model, x_test, y_test


def export(model, n_features, labels, dataset, description, accuracy):
    """Hand-built graph: Sub/Div standardisation, MatMul/Add/Relu, MatMul/Add, Softmax."""
    scaler, mlp = model[0], model[-1]
    mean = scaler.mean_.astype(np.float32)
    scale = scaler.scale_.astype(np.float32)
    scale = np.where(scale == 0, np.float32(1), scale).astype(np.float32)
    w1 = mlp.coefs_[0].astype(np.float32)
    b1 = mlp.intercepts_[0].astype(np.float32)
    w2 = mlp.coefs_[1].astype(np.float32)
    b2 = mlp.intercepts_[1].astype(np.float32)
    if mlp.activation != "relu" or len(mlp.coefs_) != 2:
        raise SystemExit("export handles exactly one relu hidden layer")
    n_classes = len(labels)
    if w2.shape[1] == 1:
        # Binary MLP: one logistic unit z. softmax([0, z]) == [1 - sigmoid(z), sigmoid(z)].
        w2 = np.concatenate([np.zeros_like(w2), w2], axis=1)
        b2 = np.concatenate([np.zeros_like(b2), b2])
    assert w2.shape[1] == n_classes and list(mlp.classes_) == list(range(n_classes))

    inits = [
        numpy_helper.from_array(mean, "mean"),
        numpy_helper.from_array(scale, "scale"),
        numpy_helper.from_array(w1, "W1"),
        numpy_helper.from_array(b1, "b1"),
        numpy_helper.from_array(w2, "W2"),
        numpy_helper.from_array(b2, "b2"),
    ]
    nodes = [
        helper.make_node("Sub", [INPUT_NAME, "mean"], ["centred"], name="sub_mean"),
        helper.make_node("Div", ["centred", "scale"], ["standardised"], name="div_scale"),
        helper.make_node("MatMul", ["standardised", "W1"], ["h_mm"], name="hidden_matmul"),
        helper.make_node("Add", ["h_mm", "b1"], ["h_pre"], name="hidden_add"),
        helper.make_node("Relu", ["h_pre"], ["hidden"], name="hidden_relu"),
        helper.make_node("MatMul", ["hidden", "W2"], ["o_mm"], name="out_matmul"),
        helper.make_node("Add", ["o_mm", "b2"], ["logits"], name="out_add"),
        helper.make_node("Softmax", ["logits"], [OUTPUT_NAME], name="softmax", axis=1),
    ]
    graph = helper.make_graph(
        nodes, f"{dataset}_mlp",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", n_features])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", n_classes])],
        initializer=inits,
    )
    onnx_model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name=PRODUCER,
        producer_version="1",
        doc_string=(f"{description}. MLP (32 relu hidden units) test fixture from {PRODUCER}; "
                    "not clinically validated. Input: raw float32 features [batch, "
                    f"{n_features}]; output: softmax probabilities [batch, {n_classes}] "
                    "in the order of the 'labels' metadata."),
    )
    onnx_model.ir_version = IR_VERSION
    helper.set_model_props(onnx_model, {
        "labels": ",".join(labels),
        "dataset": dataset,
        "accuracy": accuracy,
    })
    return onnx_model


def fmt(value, integer):
    """Shortest text that parses back to exactly this float32 (integers for digits)."""
    v = np.float32(value)
    if integer:
        assert v == np.round(v)
        return str(int(v))
    return np.format_float_positional(v, unique=True, trim="-")


def holdout_csv(x_test, y_test, labels, integer):
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["label"] + [f"f{i}" for i in range(x_test.shape[1])])
    for row, target in zip(x_test, y_test):
        w.writerow([labels[target]] + [fmt(v, integer) for v in row])
    return out.getvalue()


def parse_csv(text, labels):
    rows = list(csv.reader(io.StringIO(text)))
    header, body = rows[0], rows[1:]
    assert header[0] == "label"
    x = np.array([[np.float32(float(v)) for v in r[1:]] for r in body], dtype=np.float32)
    y = np.array([labels.index(r[0]) for r in body])
    return x, y


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def build(name, loader, dataset, integer, description):
    x, y, labels = load(loader)
    model, x_test, y_test = train(x, y)

    csv_text = holdout_csv(x_test, y_test, labels, integer)
    x_csv, y_csv = parse_csv(csv_text, labels)
    if not (np.array_equal(x_csv.view(np.uint32), x_test.view(np.uint32))
            and np.array_equal(y_csv, y_test)):
        raise SystemExit(f"{name}: held-out CSV does not round-trip exactly as float32")

    sk_proba = model.predict_proba(x_csv.astype(np.float64))
    sk_pred = model.predict(x_csv.astype(np.float64))

    # Export twice: first to measure, then with the accuracy the ONNX model itself scores.
    accuracy = None
    onnx_bytes = b""
    for _ in range(2):
        onnx_model = export(model, x.shape[1], labels, dataset, description,
                            "pending" if accuracy is None else accuracy)
        onnx.checker.check_model(onnx_model, full_check=True)
        onnx_bytes = onnx_model.SerializeToString(deterministic=True)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])
        assert [i.name for i in sess.get_inputs()] == [INPUT_NAME]
        assert [o.name for o in sess.get_outputs()] == [OUTPUT_NAME]
        proba = sess.run([OUTPUT_NAME], {INPUT_NAME: x_csv})[0]
        single = sess.run([OUTPUT_NAME], {INPUT_NAME: x_csv[:1]})[0]
        assert proba.shape == (len(x_csv), len(labels)) and single.shape == (1, len(labels))
        np.testing.assert_allclose(single, proba[:1], atol=1e-6)
        pred = proba.argmax(axis=1)
        agree = float(np.mean(pred == sk_pred))
        if agree < 0.99:
            raise SystemExit(f"{name}: ONNX agrees with sklearn on only {agree:.4f} of rows")
        np.testing.assert_allclose(proba, sk_proba, atol=1e-4, rtol=0,
                                   err_msg=f"{name}: ONNX probabilities differ from sklearn")
        correct = int(np.sum(pred == y_csv))
        acc = correct / len(y_csv)
        if acc < 0.95:
            raise SystemExit(f"{name}: held-out accuracy {acc:.4f} < 0.95")
        accuracy = f"{acc:.4f}"

    loaded = onnx.load_from_string(onnx_bytes)
    props = {p.key: p.value for p in loaded.metadata_props}
    assert props == {"labels": ",".join(labels), "dataset": dataset, "accuracy": accuracy}
    assert loaded.ir_version == IR_VERSION and loaded.opset_import[0].version == OPSET
    ops = sorted({n.op_type for n in loaded.graph.node})
    assert all(n.domain == "" for n in loaded.graph.node)

    files = {f"{name}_mlp.onnx": onnx_bytes, f"{name}_holdout.csv": csv_text.encode()}
    entry = {
        "file": f"{name}_mlp.onnx",
        "dataset": dataset,
        "input_name": INPUT_NAME,
        "input_features": int(x.shape[1]),
        "output_name": OUTPUT_NAME,
        "labels": labels,
        "accuracy": accuracy,
        "holdout": f"{name}_holdout.csv",
        "holdout_rows": int(len(y_csv)),
        "holdout_correct": correct,
        "sha256": sha256(onnx_bytes),
    }
    print(f"{name}: accuracy {accuracy} ({correct}/{len(y_csv)}), "
          f"sklearn agreement {agree:.4f}, max |dp| {np.abs(proba - sk_proba).max():.2e}, "
          f"{name}_mlp.onnx {len(onnx_bytes)} bytes, {name}_holdout.csv {len(files[f'{name}_holdout.csv'])} "
          f"bytes, ops {','.join(ops)}, {mlp_iters(model)} epochs")
    return files, entry


def mlp_iters(model):
    return model[-1].n_iter_


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=HERE, help="output directory (default: %(default)s)")
    args = parser.parse_args()
    check_versions()

    files, models = {}, []
    for spec in DATASETS:
        f, entry = build(*spec)
        files.update(f)
        models.append(entry)
    manifest = {"producer": PRODUCER, "opset": OPSET, "ir_version": IR_VERSION,
                "models": models}
    files["models.json"] = (json.dumps(manifest, indent=2) + "\n").encode()

    # Everything verified: write the files, then read them back.
    os.makedirs(args.out, exist_ok=True)
    for fname, data in files.items():
        path = os.path.join(args.out, fname)
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    for entry in models:
        with open(os.path.join(args.out, entry["file"]), "rb") as f:
            assert sha256(f.read()) == entry["sha256"]
    print(f"ok: wrote {', '.join(sorted(files))} to {args.out}")


if __name__ == "__main__":
    main()
