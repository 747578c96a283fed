"""Checkpoints: wrappers, prefixes, architecture inference, and mismatches."""

import pytest
import torch

from vggdeploy import BadInput, VGG, get_variant, load_model
from vggdeploy.variants import CONFIGS, Variant
from vggdeploy.weights import infer_variant


@pytest.mark.parametrize("config,bn", [(c, bn) for c in CONFIGS for bn in (False, True) if not (c == "A-LRN" and bn)])
def test_architecture_is_inferred_from_tensor_shapes(config, bn):
    v = Variant("x", config, bn, num_classes=37, hidden=512, pool=7 if config != "mini" else 4)
    with torch.device("meta"):
        sd = VGG(v).state_dict()
    got = infer_variant(sd, "ckpt")
    assert (got.config, got.batch_norm, got.num_classes, got.hidden, got.pool) == (config, bn, 37, 512, v.pool)


def test_wrapped_checkpoint_with_module_prefix_loads_and_says_what_it_inferred(tmp_path, mini):
    sd = {f"module.{k}": t for k, t in mini.model.state_dict().items()}
    path = tmp_path / "finetuned.pth"
    torch.save({"epoch": 3, "state_dict": sd}, path)
    loaded = load_model(str(path))
    assert loaded.variant.config == "mini" and loaded.variant.batch_norm
    assert "config mini with BN, 10 classes" in loaded.inferred
    assert loaded.variant.mean == (0.1307,)  # preprocessing of the named variant with that config
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), mini.model.eval()(x))


def test_named_variant_with_a_finetuned_head(tmp_path, mini):
    sd = dict(mini.model.state_dict())
    sd["classifier.6.weight"] = torch.zeros(3, 128)
    sd["classifier.6.bias"] = torch.zeros(3)
    torch.save({"model": sd}, tmp_path / "head3.pth")
    loaded = load_model("vgg-mini", str(tmp_path / "head3.pth"))
    assert loaded.variant.num_classes == 3


def test_checkpoint_matching_no_vgg_names_the_tensors(tmp_path, mini):
    sd = dict(mini.model.state_dict())
    sd["features.4.weight"] = torch.zeros(48, 16, 3, 3)  # conv2_1 with the wrong width
    torch.save(sd, tmp_path / "odd.pth")
    with pytest.raises(BadInput, match=r"matches no VGG configuration.*features\.4\.weight"):
        load_model(str(tmp_path / "odd.pth"))


def test_checkpoint_for_another_variant(tmp_path, mini):
    torch.save(mini.model.state_dict(), tmp_path / "mini.pth")
    with pytest.raises(BadInput, match="does not match vgg11"):
        load_model("vgg11", str(tmp_path / "mini.pth"))


def test_not_a_state_dict(tmp_path):
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(BadInput, match="holds no state dict"):
        load_model(str(tmp_path / "list.pth"))


def test_imagenet_weights_offline_is_an_environment_error(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty cache: a download is needed
    from vggdeploy import MissingEnvironment

    try:
        loaded = load_model("vgg11")
    except MissingEnvironment as e:
        assert e.exit_code == 3 and "--weights PATH" in e.hint
    else:  # a machine with network access: the real weights, published hash prefix in the name
        assert loaded.weights_sha256.startswith("8a719046")
        assert get_variant("vgg11").tv_weights
