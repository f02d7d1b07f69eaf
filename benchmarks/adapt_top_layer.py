"""A lab's first session with the backbone's last layers adapted too, against the head alone.

    .venv/bin/python benchmarks/adapt_top_layer.py --runs runs/lodo-bccd-v4 [--draws 5] [--steps 600]
        [--lr 1e-3] [--pull 1e-3] [--entry block7a_project_bn | block6d_add]

``yawbcc adapt`` refits only the classification head on pooled features the backbone learnt
without the lab.  This measures what more layers would add: by default the backbone's last
1x1 convolution (``top_conv``, 320 -> 1,280 channels, and its batch norm's scale and shift;
``--entry block6d_add``: the whole last block too) fitted with the head, from the same session
``benchmarks/adaptation.py`` simulates — 50 reviewed cells (stratified at random, one copy per
LISC source cell), the unreviewed cells the adapted head pseudo-labels (both views agree, at
least 90 % sure), and a replay sample of the run's training labs (120 training cells per
class), weighted as the head's fit weighs them, each step on 256 cells with one of their two
views, an L2 pull towards the bundle's kernels.  The maps that enter the adapted layers are
computed once per cell.

Printed per draw and averaged: balanced accuracy over neutrophil / lymphocyte / monocyte /
eosinophil on the unreviewed cells, accuracy, and the share of the wrong cells among the least
sure 35 % (how well confidence ranks the mistakes), for the shipped path (``one_session``: the
head alone, calibrated) and for the head with the last layers (uncalibrated: no cross-validation
to fit a temperature on); seconds of their fit.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from adaptation import DATA, QUEUE_BUDGET, Lab, draw, one_session, wrong_among_first  # noqa: E402

from training.corrections import correction_inputs  # noqa: E402
from training.domain_fit import balanced_accuracy_four  # noqa: E402
from training.domains import all_cells, cells_as_rows  # noqa: E402
from training.semi_supervised import LabCells, pseudo_labels, session_weights  # noqa: E402
from yawbcc_desktop.core.classes import GROUPS  # noqa: E402
from yawbcc_desktop.core.classifier import TTA_VIEWS, ModelBundle  # noqa: E402

# Replay: this many training cells per class, over all the run's labs together (a bundle's own
# replay.npz holds 120 per lab and class, as pooled features only: no maps to adapt layers on).
REPLAY_PER_CLASS = 120
BATCH = 256


class LastLayers:
    """The backbone's layers after ``entry`` (a chain: each takes the one before), pooling and
    head, on the maps ``entry`` gives (N, 5, 5, C), both views of each cell computed once; its
    batch norms keep their statistics (called in inference mode), their scales and shifts learn."""

    def __init__(self, bundle: ModelBundle, entry: str):
        import keras

        backbone = bundle.model.get_layer("backbone")
        names = [layer.name for layer in backbone.layers]
        layers = backbone.layers[names.index(entry) + 1 : names.index("top_activation") + 1]
        for before, layer in zip([backbone.get_layer(entry), *layers], layers):
            if layer.input is not before.output:
                raise ValueError(f"{bundle.folder}: {layer.name} does not take {before.name}'s output: not a chain")
        self._maps = keras.Model(backbone.input, backbone.get_layer(entry).output)
        x = inputs = keras.Input(backbone.get_layer(entry).output.shape[1:])
        for layer in layers:
            x = layer(x)
        logits = bundle.model.get_layer("logits")
        head = keras.layers.Dense(logits.units)
        self.model = keras.Model(inputs, head(keras.layers.GlobalAveragePooling2D()(x)))
        head.set_weights(logits.get_weights())
        self.start = [v.numpy() for v in self.model.trainable_variables]  # the bundle's weights
        self.size = f"{len(self.start)} tensors, {sum(v.size for v in self.start) / 1e3:.0f} k weights"

    def maps(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        def one(x):
            return np.concatenate(
                [np.asarray(self._maps(x[i : i + 64].astype(np.float32), training=False)) for i in range(0, len(x), 64)]
            )

        return one(inputs), one(TTA_VIEWS["flip_lr"](inputs))

    def pooled(self, maps: np.ndarray) -> np.ndarray:
        """The pooled features (what the head sees) of the bundle's own layers."""
        import keras

        pooled = keras.Model(self.model.input, self.model.layers[-2].output)
        return np.asarray(pooled(maps, training=False))

    def fit(self, views: tuple[np.ndarray, np.ndarray], labels, weights, steps: int, lr: float, pull: float, seed: int):
        """The layers and head fitted from the bundle's weights (cells drawn by ``weights``, an L2
        pull towards the bundle's kernels); their fitted weights, the bundle's put back."""
        import tensorflow as tf

        params = self.model.trainable_variables
        kernels = [(v, tf.constant(v0)) for v, v0 in zip(params, self.start) if "kernel" in v.path]
        opt = tf.keras.optimizers.Adam(lr)

        @tf.function
        def step(x, y):
            with tf.GradientTape() as tape:
                logits = self.model(x, training=False)
                loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
                loss += pull * tf.add_n([tf.reduce_sum((v - v0) ** 2) for v, v0 in kernels])
            opt.apply_gradients(zip(tape.gradient(loss, params), params))

        rng = np.random.default_rng(seed)
        p = weights / weights.sum()
        try:
            for _ in range(steps):
                idx = rng.choice(len(labels), BATCH, p=p)
                mirror = rng.random(BATCH) < 0.5
                step(tf.constant(np.where(mirror[:, None, None, None], views[1][idx], views[0][idx])), tf.constant(labels[idx]))
            return [v.numpy() for v in params]
        finally:
            for v, v0 in zip(params, self.start):
                v.assign(v0)

    def probabilities(self, views: tuple[np.ndarray, np.ndarray], fitted) -> np.ndarray:
        """Softmax of the two views' mean log-probabilities through the fitted weights, as the
        bundle averages them."""
        import tensorflow as tf

        params = self.model.trainable_variables
        for v, f in zip(params, fitted):
            v.assign(f)
        try:

            def log_probs(m):
                chunks = [tf.nn.log_softmax(self.model(m[i : i + BATCH], training=False)) for i in range(0, len(m), BATCH)]
                return np.concatenate([c.numpy() for c in chunks])

            mean = (log_probs(views[0]) + log_probs(views[1])) / 2
        finally:
            for v, v0 in zip(params, self.start):
                v.assign(v0)
        e = np.exp(mean - mean.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="+", required=True)
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--pull", type=float, default=1e-3, help="L2 pull towards the bundle's kernels and head")
    parser.add_argument(
        "--entry",
        default="block7a_project_bn",
        help="the backbone layer whose maps enter the adapted layers (block7a_project_bn: top_conv alone; "
        "block6d_add: the last block too)",
    )
    args = parser.parse_args()
    cells = all_cells(DATA, ROOT / "runs" / "split.csv")
    for run in args.runs:
        bundle = ModelBundle(run)
        order = bundle.card.class_order
        held = bundle.card.extra["held_out_domain"]
        lab = Lab(bundle, cells[cells.domain.eq(held)].reset_index(drop=True))
        top = LastLayers(bundle, args.entry)
        lab_maps = top.maps(correction_inputs(bundle, lab.rows)[0])
        # The layers rebuilt from the maps must give the bundle's own pooled features.
        rebuilt = top.pooled(lab_maps[0][:64])
        np.testing.assert_allclose(rebuilt, lab.plain[:64], atol=1e-3, err_msg=f"{run}: the last layers rebuilt wrong")
        print(f"{bundle.name}: adapting the layers after {args.entry} ({top.size}) with the head", flush=True)
        train = cells[cells.domain.isin(bundle.card.extra["training_domains"]) & cells.split.eq("train")]
        rng = np.random.default_rng(0)
        groups = train["group"].to_numpy()
        pick_replay = np.concatenate(
            [
                rng.choice(np.flatnonzero(groups == g), min(REPLAY_PER_CLASS, int(np.sum(groups == g))), replace=False)
                for g in np.unique(groups)
            ]
        )
        replay = train.iloc[pick_replay]
        replay_maps = top.maps(correction_inputs(bundle, cells_as_rows(replay))[0])
        replay_labels = np.array([order.index(g) for g in replay["group"]])
        figures = []
        for r in range(args.draws):
            pick = draw(lab.labels, args.k, np.random.default_rng(1000 * args.k + r), lab.sources)
            rest = np.flatnonzero(~np.isin(lab.sources, lab.sources[pick]))
            head_only = one_session(lab, pick, True, 0.9, seed=r)
            # The same pseudo-labels the adapted head gives the unreviewed cells, and the same
            # weights: half the lab's (reviewed and pseudo-labelled, shared by class), half the replay's.
            idx, said = pseudo_labels(LabCells(lab.plain[rest], lab.mirror[rest]), *head_only["head"])
            plain, mirror = (np.concatenate([m[pick], m[rest][idx], rm]) for m, rm in zip(lab_maps, replay_maps))
            labels = np.concatenate([[order.index(GROUPS[c]) for c in lab.labels[pick]], said, replay_labels]).astype(np.int32)
            weights = session_weights(len(pick), said, len(order), len(replay_labels))
            t0 = time.monotonic()
            params = top.fit((plain, mirror), labels, weights, args.steps, args.lr, args.pull, seed=r)
            seconds = time.monotonic() - t0
            probs = top.probabilities((lab_maps[0][rest], lab_maps[1][rest]), params)
            pred = np.array([GROUPS.index(order[c]) for c in probs.argmax(axis=1)])
            truth = lab.labels[rest]
            wrong = pred != truth
            row = (
                head_only["after"],
                head_only["accuracy"],
                head_only["w→q@35"],
                balanced_accuracy_four(truth, pred),
                float(np.mean(~wrong)),
                wrong_among_first(np.argsort(probs.max(axis=1)), wrong),
                seconds,
            )
            figures.append(row)
            print(f"{bundle.name} {held} draw {r}: head alone " + _text(row), flush=True)
        mean, worst = np.mean(figures, axis=0), np.min(figures, axis=0)
        print(f"{bundle.name} {held} mean of {args.draws}: head alone " + _text(tuple(mean)), flush=True)
        print(f"    worst draw: head alone {worst[0]:.3f}, with the last layer {worst[3]:.3f}", flush=True)
    print("bal-4: balanced accuracy over NEU/LYM/MON/EOS on the unreviewed cells; acc: accuracy; wrong in the least")
    print(f"sure {QUEUE_BUDGET:.0%}: share of the wrong cells among them; s: seconds of the layers' fit (2 cores).")


def _text(row) -> str:
    return (
        f"bal-4 {row[0]:.3f}, acc {row[1]:.3f}, wrong in the least sure 35 % {row[2]:.3f} | with the last layer "
        f"bal-4 {row[3]:.3f}, acc {row[4]:.3f}, wrong in the least sure 35 % {row[5]:.3f} ({row[6]:.0f} s)"
    )


if __name__ == "__main__":
    main()
