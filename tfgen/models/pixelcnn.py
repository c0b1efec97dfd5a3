"""PixelCNN (van den Oord, Kalchbrenner, Kavukcuoglu 2016, section 3.5).

Glossary of tensor shapes:
  B: batch.  H, W: image height and width.  C: colour channels.
  h: `hidden_dim`; the residual stream has 2h features.
  P: parameters per pixel (C * K for the categorical head).
"""

import keras
import tensorflow as tf

from tfgen import layers
from tfgen.models import base


@keras.saving.register_keras_serializable(package="tfgen")
class PixelCNN(base.AutoregressiveModel):
  """The PixelCNN of "Pixel Recurrent Neural Networks", section 3.5 and figure 5.

  Architecture (all convolutions masked, so that the output at subpixel t depends
  only on subpixels before t in raster-then-channel order):

    x -> 7x7 conv, mask A, 2h                          [B, H, W, 2h]
      -> num_blocks x residual block:
           2h -> ReLU -> 1x1 conv (h) -> ReLU -> 3x3 conv (h) -> ReLU -> 1x1 conv (2h), + input
      -> ReLU -> 1x1 conv (output_dim), mask B -> ReLU -> 1x1 conv (P), mask B
                                                       [B, H, W, P]

  With `num_classes`, a learned per-class bias is added after every convolution
  (p(x | y) with a one-hot y, van den Oord et al. 2016b, eq. 4).

  Hyper-parameters (`HPARAMS`):
    hidden_dim: h.
    num_blocks: number of residual blocks.
    output_dim: width of the hidden 1x1 output layer.
    input_kernel_size: size of the mask-A input convolution.
    kernel_size: size of the masked convolution inside each residual block.

  References:
    [1] Aaron van den Oord, Nal Kalchbrenner, Koray Kavukcuoglu. Pixel Recurrent
        Neural Networks. ICML 2016. https://arxiv.org/abs/1601.06759
    [2] Aaron van den Oord, Nal Kalchbrenner, Oriol Vinyals, Lasse Espeholt, Alex
        Graves, Koray Kavukcuoglu. Conditional Image Generation with PixelCNN
        Decoders. NeurIPS 2016. https://arxiv.org/abs/1606.05328
  """

  MODEL_NAME = "pixelcnn"
  HPARAMS = {
      "hidden_dim": 32,
      "num_blocks": 6,
      "output_dim": 64,
      "input_kernel_size": 7,
      "kernel_size": 3,
  }

  def __init__(self, image_shape, num_levels, num_classes=None, name=None, **hparams):
    super().__init__(image_shape, num_levels, num_classes, name=name, **hparams)
    hp = self.hparams
    for key in ("hidden_dim", "num_blocks", "output_dim"):
      if hp[key] < 1:
        raise ValueError(f"PixelCNN hyper-parameter {key} must be positive, got {hp[key]}.")
    colors = self.image_shape[-1]
    h = hp["hidden_dim"]

    def conv(filters, size, mask="B"):
      return layers.MaskedConv2D(filters, size, mask_type=mask, num_colors=colors)

    self.input_conv = conv(2 * h, hp["input_kernel_size"], mask="A")
    self.blocks = [(conv(h, 1), conv(h, hp["kernel_size"]), conv(2 * h, 1))
                   for _ in range(hp["num_blocks"])]
    self.output_convs = [conv(hp["output_dim"], 1), conv(self.head.num_params, 1)]
    self.class_biases = None
    if self.num_classes is not None:
      widths = [2 * h] + [w for _ in self.blocks for w in (h, h, 2 * h)] + [hp["output_dim"]]
      self.class_biases = [layers.ClassBias(self.num_classes, w) for w in widths]
    self._finish_init()

  def call(self, inputs, training=False):
    labels = self._labels(inputs)
    biases = iter(self.class_biases or [])

    def condition(features):
      return features if labels is None else next(biases)(features, labels)

    x = self._scaled_images(inputs)  # [B, H, W, C]
    h = condition(self.input_conv(x))  # [B, H, W, 2h]
    for reduce, spatial, expand in self.blocks:
      r = condition(reduce(tf.nn.relu(h)))  # [B, H, W, h]
      r = condition(spatial(tf.nn.relu(r)))  # [B, H, W, h]
      h = h + condition(expand(tf.nn.relu(r)))  # [B, H, W, 2h]
    out = condition(self.output_convs[0](tf.nn.relu(h)))  # [B, H, W, output_dim]
    return self.output_convs[1](tf.nn.relu(out))  # [B, H, W, P]
