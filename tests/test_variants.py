import pytest
import torch
import torchvision

from vggdeploy import BadInput, VGG, get_variant
from vggdeploy.variants import VARIANTS, all_taps, cost, default_taps

TV_NAMES = ["vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"]


@pytest.mark.parametrize("name", TV_NAMES)
def test_torchvision_state_dicts_load_unchanged(name):
    with torch.device("meta"):
        ours = VGG(get_variant(name)).state_dict()
        theirs = getattr(torchvision.models, name)(weights=None).state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}


@pytest.mark.parametrize("name", TV_NAMES)
def test_cost_matches_torchvision_published_meta(name):
    v = get_variant(name)
    meta = torchvision.models.get_weight(v.tv_weights).meta
    params, macs = cost(v)
    assert params == meta["num_params"]
    assert round(macs / 1e9, 2) == pytest.approx(meta["_ops"], abs=0.01)


def test_same_outputs_as_torchvision_with_its_weights():
    torch.manual_seed(0)
    tv = torchvision.models.vgg11_bn(weights=None).eval()
    ours = VGG(get_variant("vgg11_bn")).eval()
    ours.load_state_dict(tv.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(ours(x), tv(x))


def test_paper_configurations():
    c = VGG(get_variant("C"))
    kernels = [m.kernel_size[0] for m in c.features if isinstance(m, torch.nn.Conv2d)]
    assert kernels == [3, 3, 3, 3, 3, 3, 1, 3, 3, 1, 3, 3, 1]
    lrn = VGG(get_variant("A-LRN"))
    assert isinstance(lrn.features[2], torch.nn.LocalResponseNorm)
    assert [get_variant(n).weight_layers for n in ("A", "A-LRN", "B", "C", "D", "E")] == [11, 11, 13, 16, 16, 19]
    assert {v.config for v in VARIANTS.values()} >= {"A", "A-LRN", "B", "C", "D", "E"}


def test_taps_follow_the_usual_names():
    v = get_variant("vgg16")
    assert default_taps(v) == ["relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3"]
    assert default_taps(get_variant("vgg19"))[-1] == "relu5_4"
    assert "pool5" in all_taps(v) and "conv3_3" in all_taps(v)


def test_unknown_variant_names_the_closest():
    with pytest.raises(BadInput) as e:
        get_variant("vgg61")
    assert "vgg16" in e.value.hint
    assert get_variant("VGG16_BN").name == "vgg16_bn"


@pytest.mark.parametrize("name", TV_NAMES)
def test_published_accuracy_table_is_torchvisions(name):
    from vggdeploy.variants import published_metrics

    w = torchvision.models.get_weight(get_variant(name).tv_weights)
    m = w.meta["_metrics"]["ImageNet-1K"]
    assert published_metrics(get_variant(name)) == {"top1": m["acc@1"], "top5": m["acc@5"], "url": w.url,
                                                    "file_size_mb": w.meta["_file_size"]}
