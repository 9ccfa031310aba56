"""The paper's constants as the bundled configs carry them (REFERENCE.md: Tolstikhin et al.
2018, Sec. 4, and the public code where the paper is silent), read by field name. Every
value here is the method's; changing one in a config file or in the shared defaults fails."""
import pytest

from wae_jax import config as config_lib
from wae_jax import mmd

MNIST = ("mnist_wae_mmd", "mnist_wae_gan", "mnist_wae_sw", "mnist_vae")
CELEBA = ("celeba_wae_mmd", "celeba_wae_gan", "celeba_wae_sw", "celeba_vae")


@pytest.mark.parametrize("name", MNIST)
def test_mnist_setting(name):
  c = config_lib.load(name)
  assert (c.z_dim, c.prior_var) == (8, 1.0)  # d_z 8, P_Z = N(0, I).
  assert (c.batch_size, c.num_steps) == (100, 100 * 600)  # 100 epochs of 60k at batch 100.
  assert (c.optim.lr, c.optim.b1) == (1e-3, 0.5)
  assert (tuple(c.optim.decay_epochs), tuple(c.optim.decay_factors)) == ((30, 50, 100),
                                                                         (2.0, 5.0, 10.0))
  assert (c.model.kernel_size, c.model.enc_layers, c.model.dec_layers) == (4, 4, 3)
  assert c.data.heldout == 10_000  # The public code holds out the last 10k.
  assert (c.gan.layers, c.gan.units) == (4, 512)


@pytest.mark.parametrize("name", CELEBA)
def test_celeba_setting(name):
  c = config_lib.load(name)
  assert (c.z_dim, c.prior_var) == (64, 2.0)  # The paper's sigma_z^2 = 2, not the code's 1.
  assert (c.batch_size, c.num_steps) == (100, 55 * 1826)  # 55 epochs of 182,599 at 100.
  assert c.optim.b1 == 0.5
  assert (tuple(c.optim.decay_epochs), tuple(c.optim.decay_factors)) == ((30, 50), (2.0, 5.0))
  assert (c.model.kernel_size, c.model.enc_layers, c.model.dec_layers) == (5, 4, 4)
  assert c.data.heldout == 20_000
  assert (c.gan.layers, c.gan.units) == (4, 1024)


@pytest.mark.parametrize("name", MNIST + CELEBA)
def test_what_every_algorithm_shares(name):
  """The DCGAN nets' N(0, 0.01^2) initialisation, the IMQ kernel summed over the public code's
  widths, encoder pre-training as the public code does it."""
  c = config_lib.load(name)
  assert (c.model.arch, c.model.init_std) == ("dcgan", 0.01)
  assert c.mmd.kernel == "imq" and tuple(c.mmd.scales) == mmd.PAPER_SCALES == (
      0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
  assert (c.pretrain.max_steps, c.pretrain.tol) == (200, 0.1)
  assert c.pretrain.batch_size == (1000 if name.startswith("mnist") else 256)


@pytest.mark.parametrize("name", [n for n in MNIST + CELEBA if "vae" not in n])
def test_wae_encoders_are_deterministic_with_input_noise_and_the_l2sq_cost(name):
  """The paper's deterministic encoder with the public code's N(0, 0.01^2) input noise, and
  c = 0.05 * ||x - x_hat||^2."""
  c = config_lib.load(name)
  assert (c.model.encoder, c.model.input_noise) == ("deterministic", 0.01)
  assert (c.recon.cost, c.recon.scale) == ("l2sq", 0.05)


@pytest.mark.parametrize("name", ["mnist_vae", "celeba_vae"])
def test_the_vae_is_a_gaussian_encoder_with_the_elbo_weights(name):
  c = config_lib.load(name)
  assert (c.algo, c.model.encoder, c.lam, c.recon.scale) == ("vae", "gaussian", 1.0, 1.0)
  assert c.recon.cost == ("bernoulli" if name.startswith("mnist") else "gaussian")


@pytest.mark.parametrize("name,lam,lr", [
    ("mnist_wae_mmd", 10.0, 1e-3),
    ("mnist_wae_gan", 10.0, 1e-3),  # The paper gives none; the public code's MNIST lambda.
    ("celeba_wae_mmd", 100.0, 1e-3),
    ("celeba_wae_gan", 1.0, 3e-4),  # A slower auto-encoder than its adversary.
])
def test_lambda_and_learning_rate_of_each_paper_algorithm(name, lam, lr):
  c = config_lib.load(name)
  assert (c.lam, c.optim.lr) == (lam, lr)


@pytest.mark.parametrize("name,gan_lr,p_trick", [("mnist_wae_gan", 5e-4, False),
                                                 ("celeba_wae_gan", 1e-3, True)])
def test_the_adversary_rate_and_the_p_trick_on_celeba(name, gan_lr, p_trick):
  c = config_lib.load(name)
  assert (c.gan.lr, c.gan.p_trick) == (gan_lr, p_trick)
