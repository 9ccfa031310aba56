"""Every config loads, and each bad field stops the run with one line that names it; each
part (regulariser, evaluator) brings its own section, from inside wae_jax or outside."""
import json
import os
import subprocess
import sys

import ml_collections
import pytest

from wae_jax import config as config_lib
from wae_jax import evaluators
from wae_jax import regularisers

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")

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
    ("lam", -1.0, "config.lam: must be a finite number >= 0"),
    # Infinity passes a comparison and diverges at step 1: every number must be finite.
    ("lam", float("inf"), "config.lam: must be a finite number >= 0, got inf"),
    ("optim.lr", float("inf"), "config.optim.lr: must be a finite number > 0, got inf"),
    ("prior_var", float("inf"), "config.prior_var: must be a finite number > 0, got inf"),
    ("recon.scale", float("inf"), "config.recon.scale: must be a finite number > 0"),
    ("model.width", float("inf"), "config.model.width: must be a finite number > 0"),
    ("mmd.scales", (0.5, float("inf")), "config.mmd.scales: must be a non-empty tuple of finite"),
    ("gan.lr", float("nan"), "config.gan.lr: must be a finite number > 0, got nan"),
    ("seed", -1, "config.seed: must be an integer >= 0, got -1"),
    ("optim.decay_factors", (2.0, 0.0), "config.optim.decay_factors: must be finite numbers > 0"),
    ("eval.num_samples", 0, "config.eval.num_samples: must be an integer >= 1, got 0"),
    ("z_dim", 0, "config.z_dim: must be >= 1"),
    ("mmd.kernel", "gauss", "config.mmd.kernel: unknown value 'gauss'"),
    ("algo", "gan", "config.algo: unknown regulariser 'gan'"),
    ("eval.final_evaluators", ("heldout", "nope"),
     "config.eval.final_evaluators: unknown evaluator 'nope'"),
    ("mmd.block_size", 0, "config.mmd.block_size: must be an integer >= 1, got 0"),
    ("sw.num_projections", 0, "config.sw.num_projections: must be an integer >= 1, got 0"),
    ("sw.p", 0.5, "config.sw.p: must be a finite number >= 1, got 0.5"),
    ("gan.lr", 0.0, "config.gan.lr: must be a finite number > 0, got 0.0"),
    ("gan.units", 0, "config.gan.units: must be an integer >= 1, got 0"),
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


def test_each_section_is_its_parts_defaults():
  c = config_lib.mnist()
  sections = {part.section: part for part in config_lib.parts()}
  assert {"mmd", "sw", "gan"} <= set(sections)
  assert sections["mmd"] is regularisers.get("wae_mmd")
  for name, part in sections.items():
    assert c[name].to_dict() == part.defaults().to_dict()


@pytest.fixture
def rff_mmd(monkeypatch):
  """tests/fixtures/rff_mmd.py on the Python path, and forgotten after the test, so that
  configs this worker makes later lack its section."""
  monkeypatch.syspath_prepend(FIXTURES)
  monkeypatch.setattr(regularisers, "_REGISTRY", dict(regularisers._REGISTRY))
  yield
  sys.modules.pop("rff_mmd", None)


def test_an_outside_part_brings_its_section_once_imported(rff_mmd):
  assert "rff" not in config_lib.mnist()
  config_lib.load_parts({"algo": "rff_mmd", "lam": 3.0})
  c = config_lib.load("mnist_wae_mmd:debug")
  assert c.rff.num_features == 128 and c.mmd.block_size == 256
  c.algo = "rff_mmd"
  config_lib.validate(c, num_devices=8)
  c.rff.num_features = 0
  with pytest.raises(config_lib.ConfigError,
                     match="^config.rff.num_features: must be an integer >= 1, got 0$"):
    config_lib.validate(c, num_devices=8)


def test_a_config_made_before_its_part_was_imported_says_so(rff_mmd):
  c = config_lib.load("mnist_wae_mmd:debug")
  c.algo = "rff_mmd"  # Imported by the check, but this config has no section for it.
  with pytest.raises(config_lib.ConfigError, match="^config.rff: missing: the config was made "
                     "before its part was imported"):
    config_lib.validate(c, num_devices=8)


def test_an_unknown_part_names_its_field():
  with pytest.raises(config_lib.ConfigError, match="^config.algo: unknown regulariser "
                     "'no_such_module' .*a module on the Python path"):
    config_lib.load_parts({"algo": "no_such_module"})


def test_a_saved_config_of_an_outside_part_loads_its_section(rff_mmd):
  saved = config_lib.mnist().to_dict()
  saved.update(algo="rff_mmd", rff={"num_features": 32})
  c = config_lib.from_dict(json.loads(json.dumps(saved)))
  assert c.algo == "rff_mmd" and c.rff.num_features == 32
  config_lib.validate(c, num_devices=1)
  saved["rff"] = {}  # Saved before the part had the field: its default.
  assert config_lib.from_dict(saved).rff.num_features == 128


def test_the_section_of_a_part_that_cannot_be_imported_is_kept(tmp_path):
  saved = config_lib.load("mnist_wae_mmd:debug").to_dict()
  saved.update(algo="gone_part", gone={"num_features": 32, "sizes": [1, 2]})
  (tmp_path / "config.json").write_text(json.dumps(saved))
  c = config_lib.read(tmp_path)
  assert c.algo == "gone_part" and c.gone.to_dict() == {"num_features": 32, "sizes": [1, 2]}
  assert config_lib.flatten(c)["gone.sizes"] == [1, 2] and c.mmd.block_size == 256
  with pytest.raises(config_lib.ConfigError, match="^config.algo: unknown regulariser 'gone_part'"):
    config_lib.validate(c, num_devices=8)


def test_an_evaluator_declares_its_section(monkeypatch):
  monkeypatch.setattr(evaluators, "_REGISTRY", dict(evaluators._REGISTRY))

  def validate(c):
    config_lib.check(c.toy_eval.draws >= 1, "toy_eval.draws", f"must be >= 1, got {c.toy_eval.draws}")

  evaluators.register("toy_eval", metrics=(evaluators.Metric("toy"),), section="toy_eval",
                      defaults=lambda: ml_collections.ConfigDict({"draws": 3}),
                      validate=validate)(lambda context: {"toy": 0.0})
  c = config_lib.load("mnist_wae_mmd:debug")
  assert c.toy_eval.draws == 3
  c.eval.evaluators = ("heldout", "toy_eval")
  config_lib.validate(c, num_devices=8)
  c.toy_eval.draws = 0
  with pytest.raises(config_lib.ConfigError, match="^config.toy_eval.draws: must be >= 1, got 0$"):
    config_lib.validate(c, num_devices=8)


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
    (["--config=mnist_wae_mmd:debug", "--config.lam=-2"],
     "config.lam: must be a finite number >= 0, got -2"),
    (["--config=mnist_wae_mmd:debug", "--config.data.source=idx:/nope"],
     "config.data.source: no such directory"),
    (["--config=mnist_wae_mmd:debug", "--config.batch_size=60"],
     "config.batch_size: 60 does not divide over 8 devices"),
    (["--config=nope:debug"], "no config named 'nope'"),
    (["--config=mnist_wae_mmd:debug", "--config.algo=nope"],
     "config.algo: unknown regulariser 'nope'"),
    (["--config=mnist_wae_mmd:debug", "--config.eval.evaluators=heldout",
      "--config.eval.evaluators=nope"],
     "config.eval.evaluators: unknown evaluator 'nope'"),
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
