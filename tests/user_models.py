"""Models as users have them, made by the libraries they come from (timm's VGG class, torch's
TorchScript-based ONNX exporter behind Keras' conventions): shared by the checkpoint, adopt and README
tests."""

import warnings

import torch

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)  # keras.applications.vgg16.preprocess_input
MINI_CFG = [16, "M", 32, "M", 64, 64, "M"]


class KerasStyle(torch.nn.Module):
    """Keras' VGG16 graph: channels last in, softmax out; the caffe-style BGR mean subtraction is the
    user's preprocessing, outside the graph (keras.applications.vgg16.preprocess_input)."""

    def __init__(self, net, channels_last=True):
        super().__init__()
        self.net, self.channels_last = net, channels_last

    def forward(self, x):
        return torch.softmax(self.net(x.permute(0, 3, 1, 2) if self.channels_last else x), 1)


def foreign_onnx(path, channels_last=True, shape=(2, 56, 56, 3), dynamic=(0,), net=None):
    from timm.models.vgg import VGG

    torch.manual_seed(0)
    net = net or VGG(MINI_CFG, num_classes=4).eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(KerasStyle(net, channels_last).eval(), (torch.rand(*shape) * 255 - 120,), str(path), dynamo=False,
                          opset_version=17, input_names=["input_1"], output_names=["predictions"],
                          dynamic_axes={"input_1": {d: f"d{d}" for d in dynamic}, "predictions": {0: "d0"}})
    return path


def plant_outlier_channels(model, layer: int, channels, s: float):
    """A fine-tuned model's outlier channels (training without weight decay, folded BatchNorm), planted
    without changing the function: output `channels` of the `layer`-th weight layer (convolutions of
    `model.features`, then the linears of `model.classifier`; through its BatchNorm where it has one)
    scaled by `s`, the next layer's matching input weights divided by `s`. ReLU and max-pool commute
    with a positive scale, so FP32 is unchanged; the activations between the two layers get a few
    channels `s` times the others. The pair must be conv-conv or linear-linear. In place."""
    layers = [(seq, i) for seq in (model.features, model.classifier) for i, m in enumerate(seq)
              if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    (seq1, i1), (seq2, i2) = layers[layer], layers[layer + 1]
    first, second = seq1[i1], seq2[i2]
    assert type(first) is type(second), "plant within the convolutions or within the classifier"
    after = seq1[i1 + 1] if i1 + 1 < len(seq1) else None
    scaled = after if isinstance(after, torch.nn.BatchNorm2d) else first
    idx = torch.tensor(list(channels))
    with torch.no_grad():
        scaled.weight[idx] *= s
        scaled.bias[idx] *= s
        second.weight[:, idx] /= s
    return model
