"""Encoders, decoders and the latent adversary.

The DCGAN-style nets follow the public WAE code: stride-2 convolutions (transposed in the
decoder), BatchNorm with momentum 0.9 and eps 1e-5, ReLU, N(0, 0.01^2) weights; unlike it,
convolutions that feed BatchNorm have no bias, which BN's own shift makes redundant. The ResNet
nets are the bigWAE study's second architecture: pre-activation (v2) residual blocks at the
same resolutions and channel counts, so either family plugs into the same latent space.
`width` multiplies every channel count so CPU presets can shrink the 1024-channel nets.
"""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

TOP_CHANNELS = 1024


def channels(width: float, layer: int, num_layers: int) -> int:
  """DCGAN channel count of `layer`: doubling up to 1024 * width at the deepest layer."""
  return max(1, round(TOP_CHANNELS * width / 2 ** (num_layers - 1 - layer)))


def _same_padding_before(k: int, s: int) -> int:
  """Zeros `lax.conv_transpose` puts before the stride-dilated input for "SAME" padding."""
  return k - 1 if s > k - 1 else -(-(k + s - 2) // 2)


def _conv_transpose_by_matmul(x: jax.Array, kernel: jax.Array, s: int) -> jax.Array:
  """lax.conv_transpose(x, kernel, (s, s), "SAME") as one matmul and shifted adds.

  Input pixel i meets tap t in output pixel o = s i + pad - t. So every (input pixel, tap)
  product is one (pixels x C_in) @ (C_in x k^2 C_out) matmul; each tap's slice of it is then
  added, shifted, into the output phase o mod s, and the phases are interleaved. Forward and
  backward are matmuls plus memory-bound shifts.
  """
  b, h, w, cin = x.shape
  k, cout = kernel.shape[0], kernel.shape[-1]
  pad = _same_padding_before(k, s)
  u = x.reshape(-1, cin) @ kernel.transpose(2, 0, 1, 3).reshape(cin, k * k * cout)
  # Split, not indexed: the gradient of k^2 slices is k^2 full-size zero-padded copies
  # summed, that of a split one concatenation (1.4x faster for the debug nets on CPU).
  taps = jnp.split(u.reshape(b, h, w, k * k, cout), k * k, axis=3)
  place = [((pad - t) % s, (pad - t) // s) for t in range(k)]  # Tap t -> (phase, shift).
  phases = [[jnp.zeros((b, h, w, cout), x.dtype) for _ in range(s)] for _ in range(s)]
  for th, (ah, qh) in enumerate(place):
    for tw, (aw, qw) in enumerate(place):
      shifted = jax.lax.pad(taps[th * k + tw][:, :, :, 0], jnp.zeros((), x.dtype),
                            ((0, 0, 0), (qh, -qh, 0), (qw, -qw, 0), (0, 0, 0)))
      phases[ah][aw] = phases[ah][aw] + shifted
  y = jnp.stack([jnp.stack(row, axis=3) for row in phases], axis=2)  # (b, h, s, w, s, c)
  return y.reshape(b, h * s, w * s, cout)


class ConvTranspose(nn.Module):
  """`nn.ConvTranspose` with "SAME" padding: the same parameters and values.

  On CPU it is computed by `_conv_transpose_by_matmul`, because XLA:CPU runs the
  stride-dilated convolutions of a transposed convolution's backward pass through a naive
  loop at ~4 GFLOP/s (61 s for one paper-width MNIST decoder layer at batch 100);
  accelerators get `lax.conv_transpose`. `impl` ("matmul" or "xla") forces either; "auto"
  chooses by backend (config.model.conv_transpose).
  """
  features: int
  kernel_size: int
  strides: int
  use_bias: bool = True
  kernel_init: Callable = nn.initializers.lecun_normal()
  impl: str = "auto"

  @nn.compact
  def __call__(self, x):
    k, s = self.kernel_size, self.strides
    kernel = self.param("kernel", self.kernel_init, (k, k, x.shape[-1], self.features))
    impl = self.impl
    if impl == "auto":
      impl = "matmul" if jax.default_backend() == "cpu" else "xla"
    if impl == "matmul":
      y = _conv_transpose_by_matmul(x, kernel, s)
    else:
      y = jax.lax.conv_transpose(x, kernel, (s, s), "SAME",
                                 dimension_numbers=("NHWC", "HWIO", "NHWC"))
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,))
    return y


class _Common(nn.Module):
  """Fields and layer factories every image net shares."""
  num_layers: int
  width: float
  kernel_size: int
  init_std: float
  conv_transpose: str = "auto"  # config.model.conv_transpose

  def conv(self, features, strides=1, transpose=False, kernel_size=None, use_bias=True):
    k = kernel_size or self.kernel_size
    init = nn.initializers.normal(self.init_std)
    if transpose:
      return ConvTranspose(features, k, strides, use_bias=use_bias, kernel_init=init,
                           impl=self.conv_transpose)
    return nn.Conv(features, (k, k), strides=(strides, strides), padding="SAME",
                   use_bias=use_bias, kernel_init=init)

  def dense(self, features):
    return nn.Dense(features, kernel_init=nn.initializers.normal(self.init_std))

  def norm(self, train):
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)

  def preact_block(self, features, resample):
    return PreActBlock(self.num_layers, self.width, self.kernel_size, self.init_std,
                       self.conv_transpose, features=features, resample=resample)


class _Decoder(_Common):
  """What both decoders share: the output image and the linear map the code starts from."""
  image_shape: tuple[int, int, int] = (28, 28, 1)
  activation: Callable = nn.sigmoid

  def top_map(self, z):
    """A linear map from the code to a (H/2^(L-1)) x (W/2^(L-1)) map of the widest channels."""
    h, w, _ = self.image_shape
    f = 2 ** (self.num_layers - 1)
    top = channels(self.width, self.num_layers - 1, self.num_layers)
    return self.dense(h // f * (w // f) * top)(z).reshape(-1, h // f, w // f, top)


class DCGANEncoder(_Common):
  """Stride-2 convs, BN, ReLU, then a linear map to the code (or to mean and log-variance)."""
  out_dim: int = 8

  @nn.compact
  def __call__(self, x, train: bool):
    for i in range(self.num_layers):
      # No conv bias before BatchNorm: BN's shift makes it redundant (its gradient is 0).
      x = self.conv(channels(self.width, i, self.num_layers), 2, use_bias=False)(x)
      x = nn.relu(self.norm(train)(x))
    return self.dense(self.out_dim)(x.reshape(x.shape[0], -1))


class DCGANDecoder(_Decoder):
  """Linear map to a (H/2^(L-1))^2 x 1024 map, stride-2 transposed convs, a last stride-1 one."""

  @nn.compact
  def __call__(self, z, train: bool):
    x = nn.relu(self.top_map(z))
    for i in range(self.num_layers - 1):
      x = self.conv(channels(self.width, self.num_layers - 2 - i, self.num_layers), 2, True,
                    use_bias=False)(x)
      x = nn.relu(self.norm(train)(x))
    return self.activation(self.conv(self.image_shape[-1], 1, True)(x))


class PreActBlock(_Common):
  """ResNet-v2 block: BN-ReLU-conv twice, shortcut projected where the shape changes."""
  features: int = 64
  resample: str = "none"  # "down" (stride-2 conv), "up" (stride-2 transposed conv) or "none".

  @nn.compact
  def __call__(self, x, train: bool):
    strides = 1 if self.resample == "none" else 2
    transpose = self.resample == "up"
    y = nn.relu(self.norm(train)(x))
    shortcut = x
    if strides != 1 or x.shape[-1] != self.features:
      shortcut = self.conv(self.features, strides, transpose, kernel_size=1)(y)
    y = self.conv(self.features, strides, transpose, kernel_size=3)(y)
    y = self.conv(self.features, kernel_size=3)(nn.relu(self.norm(train)(y)))
    return shortcut + y


class ResNetEncoder(_Common):
  """A stem conv, one downsampling pre-activation block per DCGAN layer, then the code."""
  out_dim: int = 8

  @nn.compact
  def __call__(self, x, train: bool):
    x = self.conv(channels(self.width, 0, self.num_layers) // 2 or 1, kernel_size=3)(x)
    for i in range(self.num_layers):
      x = self.preact_block(channels(self.width, i, self.num_layers), "down")(x, train)
    x = nn.relu(self.norm(train)(x))
    return self.dense(self.out_dim)(x.reshape(x.shape[0], -1))


class ResNetDecoder(_Decoder):
  """The DCGAN decoder's resolutions, with upsampling pre-activation blocks."""

  @nn.compact
  def __call__(self, z, train: bool):
    x = self.top_map(z)
    for i in range(self.num_layers - 1):
      features = channels(self.width, self.num_layers - 2 - i, self.num_layers)
      x = self.preact_block(features, "up")(x, train)
    x = nn.relu(self.norm(train)(x))
    return self.activation(self.conv(self.image_shape[-1], kernel_size=3)(x))


# The parameter of a Gaussian decoder's learned log-variance (`recon.cost=gaussian`).
DECODER_LOG_VAR = "decoder_log_var"


def decoder_log_var(params) -> jax.Array | None:
  """The decoder's learned log-variance, None for models without one."""
  return params.get(DECODER_LOG_VAR)


class AutoEncoder(nn.Module):
  """Encoder and decoder under one set of variables.

  A Gaussian encoder's output is split into mean and log-variance and its code is a
  reparameterised draw; a deterministic encoder's output is the code (log-variance None).
  With `learned_var`, one scalar log-variance of the decoder's pixels is a parameter too.
  """
  encoder: nn.Module
  decoder: nn.Module
  gaussian: bool = False
  learned_var: bool = False

  def setup(self):
    if self.learned_var:
      self.param(DECODER_LOG_VAR, nn.initializers.zeros, ())

  def __call__(self, x, noise: jax.Array, train: bool):
    """(mean, log_var, code, reconstruction); `noise` is N(0, I) shaped like the code."""
    mean, log_var = self.encode(x, train)
    z = mean if log_var is None else mean + jnp.exp(0.5 * log_var) * noise
    return mean, log_var, z, self.decoder(z, train)

  def encode(self, x, train: bool):
    out = self.encoder(x, train)
    return tuple(jnp.split(out, 2, axis=-1)) if self.gaussian else (out, None)

  def decode(self, z, train: bool):
    return self.decoder(z, train)


class Adversary(nn.Module):
  """The latent discriminator of WAE-GAN: dense ReLU layers and one logit."""
  layers: int = 4
  units: int = 512
  init_std: float = 0.01

  @nn.compact
  def __call__(self, z):
    for _ in range(self.layers):
      z = nn.relu(nn.Dense(self.units, kernel_init=nn.initializers.normal(self.init_std))(z))
    return nn.Dense(1, kernel_init=nn.initializers.normal(self.init_std))(z)[..., 0]


def build(c: ml_collections.ConfigDict, image_shape: tuple[int, int, int],
          symmetric: bool) -> AutoEncoder:
  """The auto-encoder that config `c` describes, with a tanh output for [-1, 1] pixels."""
  m = c.model
  gaussian = m.encoder == "gaussian"
  common = dict(width=m.width, kernel_size=m.kernel_size, init_std=m.init_std,
                conv_transpose=m.conv_transpose)
  enc_cls, dec_cls = {"dcgan": (DCGANEncoder, DCGANDecoder),
                      "resnet": (ResNetEncoder, ResNetDecoder)}[m.arch]
  encoder = enc_cls(num_layers=m.enc_layers, out_dim=c.z_dim * (2 if gaussian else 1), **common)
  decoder = dec_cls(num_layers=m.dec_layers, image_shape=tuple(image_shape),
                    activation=jnp.tanh if symmetric else nn.sigmoid, **common)
  return AutoEncoder(encoder, decoder, gaussian, learned_var=c.recon.cost == "gaussian")
