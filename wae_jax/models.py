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


def _same_padding(n: int, k: int, s: int) -> tuple[int, int]:
  """The zeros lax's "SAME" puts before and after n pixels for a stride-s, k-tap conv."""
  total = max((-(-n // s) - 1) * s + k - n, 0)
  return total // 2, total - total // 2


def _resolve(impl: str) -> str:
  """"auto" is "matmul" on CPU, where XLA's own convolution gradients are slow, else "xla"."""
  if impl == "auto":
    return "matmul" if jax.default_backend() == "cpu" else "xla"
  return impl


def conv_by_matmul(x: jax.Array, kernel: jax.Array, s: int,
                   padding: tuple[tuple[int, int], tuple[int, int]]) -> jax.Array:
  """lax.conv_general_dilated(x, kernel, (s, s), padding) in NHWC/HWIO as one matmul of
  patches (pixels x k^2 C_in) @ (k^2 C_in x C_out).

  The gradients are then a matmul each plus slices and pads. XLA:CPU computes a strided
  conv's input gradient as a dilated convolution through a slow loop: forward and backward of
  the paper's 512 -> 1024 MNIST layer at batch 100 take 5.6 s that way, 0.16 s this way.
  When s divides k, the patches come from a space-to-depth of the input, (k/s)^2 contiguous
  slices of s^2 C_in channels each rather than k^2 strided ones: half the time for the
  smallest nets' layers.
  """
  b, h, w, cin = x.shape
  k, cout = kernel.shape[0], kernel.shape[-1]
  (top, bottom), (left, right) = padding
  ho, wo = (h + top + bottom - k) // s + 1, (w + left + right - k) // s + 1
  q = k // s if k % s == 0 else k  # Slices per axis; each covers k/q taps.
  # Pad (or crop) to the s (out - 1) + k pixels the patches read.
  x = jax.lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), (top, s * (ho - 1) + k - h - top, 0),
                                               (left, s * (wo - 1) + k - w - left, 0),
                                               (0, 0, 0)))
  if q == k:
    x = x[:, :, :, None, None, :]
  else:  # (b, ho + q - 1, wo + q - 1, s, s, cin): pixel (s m + r) -> (m, r).
    x = x.reshape(b, ho + q - 1, s, wo + q - 1, s, cin).transpose(0, 1, 3, 2, 4, 5)
  stride = 1 if q < k else s
  patches = jnp.stack([x[:, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride]
                       for i in range(q) for j in range(q)], axis=3)
  # (b, ho, wo, q_h q_w, r_h, r_w, cin) against kernel tap (q_h k/q + r_h, q_w k/q + r_w).
  kernel = kernel.reshape(q, k // q, q, k // q, cin, cout).transpose(0, 2, 1, 3, 4, 5)
  return (patches.reshape(b * ho * wo, -1) @ kernel.reshape(-1, cout)).reshape(b, ho, wo, cout)


def conv_transpose_by_matmul(x: jax.Array, kernel: jax.Array, s: int, before: int,
                             out_hw: tuple[int, int]) -> jax.Array:
  """A stride-s transposed conv in NHWC/HWIO in which input pixel i times tap t lands on output
  pixel s i + before - t, computed as one matmul and shifted adds; out_hw is the output size.

  lax.conv_transpose(x, kernel, (s, s), "SAME") is before = `_same_padding_before(k, s)` and
  out_hw = s (h, w). Every (input pixel, tap) product is one (pixels x C_in) @ (C_in x k^2
  C_out) matmul; each tap's slice of it is then added, shifted, into the output phase o mod s,
  and the phases are interleaved. Forward and backward are matmuls plus memory-bound shifts.
  """
  b, h, w, cin = x.shape
  k, cout = kernel.shape[0], kernel.shape[-1]
  ph, pw = -(-out_hw[0] // s), -(-out_hw[1] // s)  # Rows and columns of each phase.
  u = x.reshape(-1, cin) @ kernel.transpose(2, 0, 1, 3).reshape(cin, k * k * cout)
  # Split, not indexed: the gradient of k^2 slices is k^2 full-size zero-padded copies
  # summed, that of a split one concatenation (1.4x faster for the debug nets on CPU).
  taps = jnp.split(u.reshape(b, h, w, k * k, cout), k * k, axis=3)
  place = [((before - t) % s, (before - t) // s) for t in range(k)]  # Tap -> (phase, shift).
  zero = jnp.zeros((), x.dtype)
  phases = [[jnp.zeros((b, ph, pw, cout), x.dtype) for _ in range(s)] for _ in range(s)]
  for th, (ah, qh) in enumerate(place):
    for tw, (aw, qw) in enumerate(place):
      # Negative pads crop what falls outside the output.
      phases[ah][aw] = phases[ah][aw] + jax.lax.pad(
          taps[th * k + tw][:, :, :, 0], zero,
          ((0, 0, 0), (qh, ph - h - qh, 0), (qw, pw - w - qw, 0), (0, 0, 0)))
  y = jnp.stack([jnp.stack(row, axis=3) for row in phases], axis=2)  # (b, ph, s, pw, s, c)
  return y.reshape(b, ph * s, pw * s, cout)[:, :out_hw[0], :out_hw[1]]


class _ConvBase(nn.Module):
  """The parameters `nn.Conv` / `nn.ConvTranspose` make, "SAME" padding, and the choice of
  implementation (`impl`: "matmul", "xla" or "auto", by backend; config.model.conv_impl)."""
  features: int
  kernel_size: int
  strides: int = 1
  use_bias: bool = True
  kernel_init: Callable = nn.initializers.lecun_normal()
  impl: str = "auto"

  def compute(self, x, kernel, matmul: bool) -> jax.Array:
    raise NotImplementedError

  @nn.compact
  def __call__(self, x):
    k = self.kernel_size
    kernel = self.param("kernel", self.kernel_init, (k, k, x.shape[-1], self.features))
    y = self.compute(x, kernel, _resolve(self.impl) == "matmul")
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,))
    return y


class Conv(_ConvBase):
  """`nn.Conv` with "SAME" padding: the same parameters and values, by `conv_by_matmul` or
  `lax.conv_general_dilated`."""

  def compute(self, x, kernel, matmul):
    k, s = self.kernel_size, self.strides
    padding = (_same_padding(x.shape[1], k, s), _same_padding(x.shape[2], k, s))
    if matmul:
      return conv_by_matmul(x, kernel, s, padding)
    return jax.lax.conv_general_dilated(x, kernel, (s, s), padding,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


class ConvTranspose(_ConvBase):
  """`nn.ConvTranspose` with "SAME" padding: the same parameters and values.

  "matmul" computes it by `conv_transpose_by_matmul`, because XLA:CPU runs the
  stride-dilated convolutions of a transposed convolution's backward pass through a naive
  loop at ~4 GFLOP/s (61 s for one paper-width MNIST decoder layer at batch 100); "xla" by
  `lax.conv_transpose`.
  """

  def compute(self, x, kernel, matmul):
    k, s = self.kernel_size, self.strides
    if matmul:
      return conv_transpose_by_matmul(x, kernel, s, _same_padding_before(k, s),
                                      (s * x.shape[1], s * x.shape[2]))
    return jax.lax.conv_transpose(x, kernel, (s, s), "SAME",
                                  dimension_numbers=("NHWC", "HWIO", "NHWC"))


class _Common(nn.Module):
  """Fields and layer factories every image net shares."""
  num_layers: int
  width: float
  kernel_size: int
  init_std: float
  conv_impl: str = "auto"  # config.model.conv_impl

  def conv(self, features, strides=1, transpose=False, kernel_size=None, use_bias=True):
    cls = ConvTranspose if transpose else Conv
    return cls(features, kernel_size or self.kernel_size, strides, use_bias=use_bias,
               kernel_init=nn.initializers.normal(self.init_std), impl=self.conv_impl)

  def dense(self, features):
    return nn.Dense(features, kernel_init=nn.initializers.normal(self.init_std))

  def norm(self, train):
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)

  def preact_block(self, features, resample):
    return PreActBlock(self.num_layers, self.width, self.kernel_size, self.init_std,
                       self.conv_impl, features=features, resample=resample)


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
                conv_impl=m.conv_impl)
  enc_cls, dec_cls = {"dcgan": (DCGANEncoder, DCGANDecoder),
                      "resnet": (ResNetEncoder, ResNetDecoder)}[m.arch]
  encoder = enc_cls(num_layers=m.enc_layers, out_dim=c.z_dim * (2 if gaussian else 1), **common)
  decoder = dec_cls(num_layers=m.dec_layers, image_shape=tuple(image_shape),
                    activation=jnp.tanh if symmetric else nn.sigmoid, **common)
  return AutoEncoder(encoder, decoder, gaussian, learned_var=c.recon.cost == "gaussian")
