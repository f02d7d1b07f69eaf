"""Feature-style perturbation while training: the backbone's early feature maps see other labs' "styles".

A lab's stain, camera and focus show up in the early layers as each image's per-channel mean
and spread of activations. Perturbing those statistics while training, and leaving the shapes
(the normalised maps) as they are, asks the later layers to classify by shape:

- ``mixstyle``: each image takes a random mix of its own statistics and another image's of the
  batch (Zhou et al., *Domain generalization with MixStyle*, ICLR 2021);
- ``dsu``: each image's statistics are moved by Gaussian noise as wide as they vary across the
  batch, so styles beyond the training labs are seen too (Li et al., *Uncertainty modeling for
  out-of-distribution generalization*, ICLR 2022).

Only the training graph carries the perturbation: :func:`with_feature_style` wraps the model's
own layers (the weights are shared), and the saved bundle is the plain model.
"""

from __future__ import annotations

STYLES = ("mixstyle", "dsu")
# Before the first layer of stages 2-4: the ends of the first three stages, as both papers do.
INSERT_BEFORE = ("block2a_expand_conv", "block3a_expand_conv", "block4a_expand_conv")
_EPS = 1e-6


def _style_layer(kind: str, share: float, seed: int):
    import keras
    from keras import ops

    class FeatureStyle(keras.layers.Layer):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.seed = keras.random.SeedGenerator(seed)

        def call(self, x, training=None):
            if not training:
                return x
            # Statistics without gradient, as both papers do: the perturbation is an input, not a path.
            mu = ops.stop_gradient(ops.mean(x, axis=(1, 2), keepdims=True))
            sig = ops.stop_gradient(ops.sqrt(ops.var(x, axis=(1, 2), keepdims=True) + _EPS))
            normed = (x - mu) / sig
            batch = ops.shape(x)[0]
            if kind == "mixstyle":
                lam = keras.random.beta((batch, 1, 1, 1), 0.1, 0.1, seed=self.seed)
                perm = keras.random.shuffle(ops.arange(batch), seed=self.seed)
                new_mu = lam * mu + (1 - lam) * ops.take(mu, perm, axis=0)
                new_sig = lam * sig + (1 - lam) * ops.take(sig, perm, axis=0)
            else:
                spread_mu = ops.sqrt(ops.var(mu, axis=0, keepdims=True) + _EPS)
                spread_sig = ops.sqrt(ops.var(sig, axis=0, keepdims=True) + _EPS)
                new_mu = mu + keras.random.normal(ops.shape(mu), seed=self.seed) * spread_mu
                new_sig = sig + keras.random.normal(ops.shape(sig), seed=self.seed) * spread_sig
            styled = normed * new_sig + new_mu
            # Per image, a share of the batch is perturbed and the rest is left as it is.
            chosen = ops.cast(keras.random.uniform((batch, 1, 1, 1), seed=self.seed) < share, x.dtype)
            return chosen * styled + (1 - chosen) * x

    return FeatureStyle


def with_feature_style(model, kind: str, share: float = 0.5, seed: int = 42):
    """A training view of a classifier (image → backbone → head) whose backbone perturbs the
    feature style before each of :data:`INSERT_BEFORE`; it shares every weight with ``model``."""
    import keras

    if kind not in STYLES:
        raise ValueError(f"feature style must be one of {', '.join(STYLES)}, got {kind!r}")
    if not 0.0 < share <= 1.0:
        raise ValueError(f"the share of perturbed images must be above 0 and at most 1, got {share:g}")
    backbone = model.get_layer("backbone")
    names = {layer.name for layer in backbone.layers}
    missing = [n for n in INSERT_BEFORE if n not in names]
    if missing or model.layers[1] is not backbone:
        # The view rebuilds image → backbone → head; another layout (an input scaling outside
        # the backbone) or another backbone (other layer names) would be trained wrongly.
        raise ValueError(f"feature styles need an EfficientNet-Lite classifier (image → backbone → head); missing {missing}")
    layer_class = _style_layer(kind, share, seed)

    def reuse(layer):
        # The same layer objects (shared weights); the chosen ones see a perturbed input first.
        if layer.name in INSERT_BEFORE:
            return keras.Sequential([layer_class(name=f"style_{layer.name}"), layer], name=f"styled_{layer.name}")
        return layer

    styled = keras.models.clone_model(backbone, clone_function=reuse)
    x = styled(model.input)
    for layer in model.layers[model.layers.index(backbone) + 1 :]:
        x = layer(x)
    return keras.Model(model.input, x, name=f"{model.name}_{kind}")
