"""Every config loads, and each bad field stops the run with one line that names it."""
import os
import subprocess
import sys

import pytest

from wae_jax import config as config_lib

CONFIGS = ["mnist_wae_mmd", "mnist_wae_gan", "mnist_wae_sw", "mnist_vae", "celeba_wae_mmd",
           "celeba_wae_gan", "celeba_wae_sw", "celeba_vae"]


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("arg", ["", ":debug"])
def test_configs_load_and_validate(name, arg):
  c = config_lib.load(name + arg)
  assert c.algo in name
  if arg:
    assert c.data.source == "bundled:mnist"
    config_lib.validate(c, num_devices=8)
  else:
    config_lib.validate(c, num_devices=1)  # The paper's batch of 100 needs 1, 2, 4 or 5 devices.


def test_paper_hyperparameters():
  mmd, gan = config_lib.load("celeba_wae_mmd"), config_lib.load("celeba_wae_gan")
  assert (mmd.z_dim, mmd.prior_var, mmd.lam, mmd.optim.lr) == (64, 2.0, 100.0, 1e-3)
  assert (gan.lam, gan.optim.lr, gan.gan.lr, gan.gan.p_trick) == (1.0, 3e-4, 1e-3, True)
  m = config_lib.load("mnist_wae_mmd")
  assert (m.z_dim, m.lam, m.batch_size, m.optim.b1, m.gan.units) == (8, 10.0, 100, 0.5, 512)
  assert tuple(m.mmd.scales) == (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
  # Where the paper is silent, the public code: MNIST's lambda 10 for WAE-GAN too, and encoder
  # pre-training (up to 200 steps on 1,000 images; 256 for CelebA).
  assert config_lib.load("mnist_wae_gan").lam == 10.0
  assert (m.pretrain.max_steps, m.pretrain.batch_size, mmd.pretrain.batch_size) == (200, 1000, 256)


@pytest.mark.parametrize("field,value,message", [
    ("lam", -1.0, "config.lam: must be >= 0"),
    ("z_dim", 0, "config.z_dim: must be >= 1"),
    ("mmd.kernel", "gauss", "config.mmd.kernel: unknown value 'gauss'"),
    ("algo", "gan", "config.algo: unknown value 'gan'"),
    ("data.source", "tfds:cifar10", "config.data.source: unknown tfds dataset 'cifar10'"),
    ("data.source", "s3:x", "config.data.source: unknown source 's3:x'"),
    ("data.source", "idx:/no/such/dir", "config.data.source: no such directory"),
    ("batch_size", 100, "config.batch_size: 100 does not divide over 8 devices"),
    ("mmd.scales", (), "config.mmd.scales: must be a non-empty tuple"),
    ("eval.fid_num_samples", 1, "config.eval.fid_num_samples: must be an integer >= 2"),
    ("model.encoder", "deterministic", "config.model.encoder: the VAE needs a 'gaussian' encoder"),
])
def test_bad_fields_are_named(field, value, message):
  c = config_lib.load("mnist_vae:debug" if field == "model.encoder" else "mnist_wae_mmd:debug")
  head, _, tail = field.rpartition(".")
  (c[head] if head else c)[tail] = value
  with pytest.raises(config_lib.ConfigError, match=f"^{message}"):
    config_lib.validate(c, num_devices=8)


def test_a_bernoulli_decoder_needs_pixels_in_0_1():
  c = config_lib.load("celeba_vae")
  c.recon.cost = "bernoulli"
  with pytest.raises(config_lib.ConfigError, match=r"^config.recon.cost: bernoulli needs pixels "
                     r"in \[0, 1\], but tfds:celeb_a has them in \[-1, 1\]"):
    config_lib.validate(c, num_devices=1)
  assert config_lib.load("mnist_vae").recon.cost == "bernoulli"


def test_batch_error_suggests_divisible_sizes():
  c = config_lib.load("mnist_wae_mmd")
  with pytest.raises(config_lib.ConfigError, match="e.g. 96 or 104"):
    config_lib.validate(c, num_devices=8)


def test_unknown_config_name_lists_the_known_ones():
  with pytest.raises(config_lib.ConfigError, match="no config named 'mnist_wae'.*mnist_wae_mmd"):
    config_lib.resolve("mnist_wae:debug")


def test_flatten_uses_dotted_keys():
  flat = config_lib.flatten(config_lib.load("mnist_wae_mmd"))
  assert flat["mmd.kernel"] == "imq" and flat["lam"] == 10.0
  assert flat["mmd.scales"] == [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0]


def test_a_saved_config_reads_renamed_fields_under_their_new_names():
  saved = config_lib.load("mnist_wae_mmd:debug").to_dict()
  del saved["model"]["conv_impl"]
  saved["model"]["conv_transpose"] = "xla"  # Its name until both kinds of conv took it.
  c = config_lib.from_dict(saved)
  assert c.model.conv_impl == "xla" and "conv_transpose" not in c.model


def _wae_train(*args, tmp_path):
  env = dict(os.environ, JAX_NUM_CPU_DEVICES="8")
  return subprocess.run([sys.executable, "-m", "wae_jax.cli.train", f"--workdir={tmp_path}", *args],
                        capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize("args,message", [
    (["--config=mnist_wae_mmd:debug", "--config.lamda=3"],
     """--config: no field 'lamda'. Did you mean "lam" instead of "lamda"?"""),
    (["--config=mnist_wae_mmd:debug", "--config.lam=-2"], "config.lam: must be >= 0, got -2"),
    (["--config=mnist_wae_mmd:debug", "--config.data.source=idx:/nope"],
     "config.data.source: no such directory"),
    (["--config=mnist_wae_mmd:debug", "--config.batch_size=60"],
     "config.batch_size: 60 does not divide over 8 devices"),
    (["--config=nope:debug"], "no config named 'nope'"),
    (["--config=/nope/c.py"], "--config: no config file '/nope/c.py'"),
    ([f"--config={os.path.abspath(__file__)}"], "--config: the file defines no get_config"),
])
def test_cli_prints_one_line_and_exits_2(args, message, tmp_path):
  result = _wae_train(*args, tmp_path=tmp_path)
  assert result.returncode == 2, result.stderr[-2000:]
  errors = [l for l in result.stderr.splitlines() if l.startswith("wae-train: error:")]
  assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
  assert "Traceback" not in result.stderr
  assert not (tmp_path / "metrics.json").exists()
