"""DESIGN.md fact 7 as exact identities, and the features form's taps."""

import pytest
import torch

from vggdeploy import build_form, load_model
from vggdeploy.models import FeaturesVGG


def windows_through_classifier(vgg, pool5: torch.Tensor) -> torch.Tensor:
    """The classifier applied to every pool x pool window of pool5: (N, classes, rows, cols)."""
    k = vgg.variant.pool
    n, _, h, w = pool5.shape
    out = torch.empty(n, vgg.variant.num_classes, h - k + 1, w - k + 1)
    for i in range(h - k + 1):
        for j in range(w - k + 1):
            window = pool5[:, :, i:i + k, j:j + k]
            out[:, :, i, j] = vgg.classifier(torch.flatten(vgg.avgpool(window), 1))
    return out


@pytest.mark.parametrize("name", ["vgg-mini", "vgg11"])
def test_dense_equals_classifier_at_minimum_size(name):
    loaded = load_model(name, "random", seed=1)
    vgg, v = loaded.model, loaded.variant
    x = torch.randn(2, v.in_channels, v.min_dense_size, v.min_dense_size)
    with torch.no_grad():
        score_map, logits = build_form(vgg, "dense")(x)
        ref = build_form(vgg, "classifier")(x)
    assert score_map.shape[2:] == (1, 1)
    torch.testing.assert_close(logits, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,size", [("vgg-mini", (57, 83)), ("vgg11", (288, 320))])
def test_every_score_map_cell_is_the_classifier_on_its_pool5_window(name, size):
    loaded = load_model(name, "random", seed=2)
    vgg, v = loaded.model, loaded.variant
    x = torch.randn(1, v.in_channels, *size)
    with torch.no_grad():
        score_map, logits = build_form(vgg, "dense")(x)
        expected = windows_through_classifier(vgg.eval(), vgg.features(x))
    rows, cols = size[0] // v.stride - v.pool + 1, size[1] // v.stride - v.pool + 1
    assert score_map.shape == (1, v.num_classes, rows, cols) and rows > 1 and cols > 1
    torch.testing.assert_close(score_map, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(logits, expected.mean(dim=(2, 3)), rtol=1e-4, atol=1e-5)


def test_features_taps_equal_the_backbone_prefix(mini):
    vgg = mini.model.eval()
    taps = ["conv1_1", "relu1_1", "pool3"]
    x = torch.randn(1, 1, 40, 48)
    with torch.no_grad():
        outs = build_form(vgg, "features", taps)(x)
        conv = vgg.features[0](x)
        pool3 = vgg.features(x)
    assert (outs[0] < 0).any(), "conv1_1 must be taken before the ReLU"
    torch.testing.assert_close(outs[0], conv)
    torch.testing.assert_close(outs[1], vgg.features[1](conv).clamp(min=0))  # conv, BN, ReLU
    torch.testing.assert_close(outs[2], pool3)


def test_features_form_stops_at_the_deepest_tap(mini):
    f = FeaturesVGG(mini.model, ["relu1_1"])
    assert len(f.features) == 3  # conv, bn, relu
