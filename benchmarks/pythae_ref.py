r"""CPU-seconds per WAE-MMD training step: pythae's MNIST conv net (PyTorch) vs it in wae-jax.

The same net in Flax, trained with wae-jax's losses and optimizer; measured interleaved.

  python benchmarks/pythae_ref.py [--torch-python /work/venv-pythae/bin/python] [--rounds 3]
      [--steps 10] [--batch 100] [--warmup 2] [--conv-impl matmul]

The reference is pythae 0.1.2's WAE_MMD with its benchmark nets Encoder_Conv_AE_MNIST and
Decoder_Conv_AE_MNIST (latent dim 8, IMQ kernel at the paper's 7 widths, Adam), one step as
pythae's trainer takes it: forward, loss, zero_grad, backward, optimizer step, loss.item().
It runs in its own interpreter (a venv with torch and pythae, never the library's):

  python3.11 -m venv /work/venv-pythae &&
    /work/venv-pythae/bin/pip install torch==2.13.0 pythae==0.1.2

The JAX side rebuilds that net layer for layer (channels, kernels, strides, paddings, conv
biases, BatchNorm/ReLU placement, sigmoid output) and trains it with `losses.reconstruction`
(l2sq), `mmd.mmd` (IMQ against prior draws) and `state.optimizer` (wae-jax's Adam) in one
jitted step with the state donated. Convs use torch's paddings and compute as `--conv-impl`
says: matmul (the default, what wae-jax picks on CPU: `models.conv_by_matmul` and
`models.conv_transpose_by_matmul`) or xla (lax's convolutions).

The parent re-invokes this script as `--side torch` and `--side jax` children, alternating
torch, jax, torch, jax, ... for --rounds rounds. Each child warms up (compiles), times
--steps steps and prints one JSON line; the parent echoes them and ends with a summary line:
median process CPU-seconds per step of each side over all timed steps (time.process_time:
all threads, so a side that parallelises badly or spins idle threads pays for it), the ratio
jax/torch, FLOPs per step (multiply-adds x 2 of each conv and dense layer, x 3 for forward +
backward; transposed convs count input pixels x kernel, as benchmarks/train_step.py does),
GFLOP per CPU-second of each side, and the load averages (as `uptime` shows them) before and
after. Inputs are random 1x28x28 images in [0, 1], fixed over the steps: no input pipeline.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

Z_DIM = 8  # wae-jax's MNIST z_dim.
SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)  # IMQ widths x C, pythae's and the paper's.
LAM = 10.0  # The paper's MNIST lambda, on both sides.
RECON_SCALE = 0.05  # wae-jax's l2sq scale; pythae's reconstruction_loss_scale set to match.
LR = 1e-3
# pythae's MNIST conv net: encoder (cout, kernel, stride, padding), then a dense to Z_DIM;
# decoder: a dense to 4x4x1024, then (cout, kernel, stride, padding, output_padding).
ENCODER = ((128, 4, 2, 1), (256, 4, 2, 1), (512, 4, 2, 1), (1024, 4, 2, 1))
DECODER_TOP = (4, 4, 1024)
DECODER = ((512, 3, 2, 1, 0), (256, 3, 2, 1, 1), (1, 3, 2, 1, 1))


def forward_flops(image=(28, 28, 1)) -> int:
  """Multiply-add FLOPs of one image through the encoder and decoder above."""
  flops, size, cin = 0, image[0], image[2]
  for cout, k, s, p in ENCODER:
    size = (size + 2 * p - k) // s + 1
    flops += 2 * k * k * cin * cout * size * size
    cin = cout
  flops += 2 * size * size * cin * Z_DIM
  size, _, cin = DECODER_TOP
  flops += 2 * Z_DIM * size * size * cin
  for cout, k, s, p, op in DECODER:
    flops += 2 * k * k * cin * cout * size * size  # Each input pixel meets the kernel once.
    size, cin = (size - 1) * s - 2 * p + k + op, cout
  return flops


def cores() -> int:
  return len(os.sched_getaffinity(0))


def timed(step, warmup: int, steps: int) -> tuple[list, list]:
  """(process CPU seconds, wall seconds) of each of `steps` calls of step() after `warmup`."""
  for _ in range(warmup):
    step()
  cpu, wall = [], []
  for _ in range(steps):
    c, w = time.process_time(), time.perf_counter()
    step()
    cpu.append(time.process_time() - c)
    wall.append(time.perf_counter() - w)
  return cpu, wall


def result(side: str, args, cpu: list, wall: list, **extra) -> dict:
  return {"bench": "pythae_ref", "side": side, "round": args.round, "batch": args.batch,
          "steps": args.steps, **extra,
          "cpu_s_per_step": round(statistics.median(cpu), 4),
          "wall_s_per_step": round(statistics.median(wall), 4),
          "cpu_s": [round(t, 4) for t in cpu]}


def run_torch(args) -> dict:
  # Imported here: each side's interpreter has only its own framework.
  import torch
  from pythae.models import WAE_MMD, WAE_MMD_Config
  from pythae.models.nn.benchmarks.mnist import Decoder_Conv_AE_MNIST, Encoder_Conv_AE_MNIST

  torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  config = WAE_MMD_Config(input_dim=(1, 28, 28), latent_dim=Z_DIM, kernel_choice="imq",
                          reg_weight=LAM, kernel_bandwidth=1.0, scales=list(SCALES),
                          reconstruction_loss_scale=RECON_SCALE)
  model = WAE_MMD(config, encoder=Encoder_Conv_AE_MNIST(config),
                  decoder=Decoder_Conv_AE_MNIST(config))
  optimizer = torch.optim.Adam(model.parameters(), lr=LR)  # pythae's default optimizer.
  x = torch.rand(args.batch, 1, 28, 28)
  model.train()
  loss = [None]

  def step():
    # BaseTrainer.train_step and _optimizers_step, less the data loader and callbacks.
    out = model({"data": x})
    optimizer.zero_grad()
    out.loss.backward()
    optimizer.step()
    loss[0] = out.loss.item()

  cpu, wall = timed(step, args.warmup, args.steps)
  return result("torch", args, cpu, wall, threads=torch.get_num_threads(),
                version=f"torch {torch.__version__}",
                params=sum(p.numel() for p in model.parameters()), loss=round(loss[0], 4))


def run_jax(args) -> dict:
  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  import optax

  from wae_jax import config as config_lib
  from wae_jax import losses
  from wae_jax import mmd
  from wae_jax import models
  from wae_jax import state as state_lib

  def conv(x, kernel, s, p):
    if args.conv_impl == "matmul":
      return models.conv_by_matmul(x, kernel, s, ((p, p), (p, p)))
    return jax.lax.conv_general_dilated(x, kernel, (s, s), ((p, p), (p, p)),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))

  def conv_transpose(x, kernel, s, p, op):
    """torch's ConvTranspose2d: tap t of input pixel i lands on output s i - p + t."""
    k = kernel.shape[0]
    if args.conv_impl == "matmul":
      out = [(n - 1) * s - 2 * p + k + op for n in x.shape[1:3]]
      return models.conv_transpose_by_matmul(x, kernel[::-1, ::-1], s, k - 1 - p, out)
    pad = (k - 1 - p, k - 1 - p + op)  # lax's input-dilated convolution, the kernel flipped.
    return jax.lax.conv_general_dilated(x, kernel[::-1, ::-1], (1, 1), (pad, pad),
                                        lhs_dilation=(s, s),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))

  class Conv(nn.Module):
    features: int
    k: int
    s: int
    p: int
    op: int | None = None  # Output padding: a transposed conv.

    @nn.compact
    def __call__(self, x):
      kernel = self.param("kernel", nn.initializers.lecun_normal(),
                          (self.k, self.k, x.shape[-1], self.features))
      bias = self.param("bias", nn.initializers.zeros, (self.features,))
      if self.op is None:
        return conv(x, kernel, self.s, self.p) + bias
      return conv_transpose(x, kernel, self.s, self.p, self.op) + bias

  class Net(nn.Module):
    """pythae's Encoder_Conv_AE_MNIST and Decoder_Conv_AE_MNIST, NHWC; returns (z, x_hat)."""

    @nn.compact
    def __call__(self, x, train: bool):
      # torch's BatchNorm2d: running stats momentum 0.1 (flax's 0.9), eps 1e-5.
      norm = lambda: nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)
      for cout, k, s, p in ENCODER:
        x = nn.relu(norm()(Conv(cout, k, s, p)(x)))
      z = nn.Dense(Z_DIM)(x.reshape(x.shape[0], -1))
      y = nn.Dense(DECODER_TOP[0] * DECODER_TOP[1] * DECODER_TOP[2])(z)
      y = y.reshape((-1,) + DECODER_TOP)  # No activation here, as in pythae.
      for i, (cout, k, s, p, op) in enumerate(DECODER):
        y = Conv(cout, k, s, p, op)(y)
        y = nn.relu(norm()(y)) if i < len(DECODER) - 1 else nn.sigmoid(y)
      return z, y

  c = config_lib.load("mnist_wae_mmd")
  c.lam, c.recon.scale = LAM, RECON_SCALE
  net = Net()
  x = jax.random.uniform(jax.random.key(1), (args.batch, 28, 28, 1))
  variables = net.init(jax.random.key(0), x[:2], train=False)
  tx = state_lib.optimizer(c, 60_000 // args.batch, LR)
  state = state_lib.TrainState(
      step=jnp.zeros((), jnp.int32),
      hparams={"lam": jnp.float32(c.lam), "prior_var": jnp.float32(c.prior_var),
               "recon_scale": jnp.float32(c.recon.scale)},
      params=variables["params"], batch_stats=variables["batch_stats"],
      opt_state=tx.init(variables["params"]))
  width = 2.0 * Z_DIM * c.prior_var  # C, static: mmd's kernel is part of the program.

  def train_step(state, x, key):
    hp = state.hparams
    prior = jnp.sqrt(hp["prior_var"]) * jax.random.normal(
        jax.random.fold_in(key, state.step), (x.shape[0], Z_DIM))

    def loss_fn(params):
      (z, x_hat), updates = net.apply({"params": params, "batch_stats": state.batch_stats}, x,
                                      train=True, mutable=["batch_stats"])
      recon = losses.reconstruction(x, x_hat, c.recon.cost, hp["recon_scale"])
      penalty = mmd.mmd(z, prior, kernel="imq", c=width, scales=SCALES)
      return recon + hp["lam"] * penalty, updates["batch_stats"]

    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    return state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                         batch_stats=batch_stats, opt_state=opt_state), loss

  jitted = jax.jit(train_step, donate_argnums=0)
  key = jax.random.key(2)
  carry = [state, None]

  def step():
    carry[0], carry[1] = jitted(carry[0], x, key)
    jax.block_until_ready(carry)

  cpu, wall = timed(step, args.warmup, args.steps)
  return result("jax", args, cpu, wall, threads=cores(), version=f"jax {jax.__version__}",
                platform=jax.devices()[0].platform, conv_impl=args.conv_impl,
                params=sum(a.size for a in jax.tree.leaves(carry[0].params)),
                loss=round(float(carry[1]), 4))


def child(side: str, args, python: str, round_: int) -> dict:
  """Runs one side in `python`, echoes its JSON line and returns it parsed."""
  cmd = [python, os.path.abspath(__file__), "--side", side, "--round", str(round_),
         "--steps", str(args.steps), "--warmup", str(args.warmup), "--batch", str(args.batch),
         "--threads", str(args.threads), "--conv-impl", args.conv_impl]
  env = dict(os.environ)
  if side == "torch":
    env.pop("PYTHONPATH", None)  # Nothing of the library's environment in pythae's.
  else:
    env["JAX_PLATFORMS"] = "cpu"  # The same CPU as torch, whatever else the host has.
  out = subprocess.run(cmd, env=env, check=True, stdout=subprocess.PIPE, text=True).stdout
  line = [l for l in out.splitlines() if l.startswith("{")][-1]
  print(line, flush=True)
  return json.loads(line)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--torch-python", default="/work/venv-pythae/bin/python",
                      help="an interpreter with torch and pythae")
  parser.add_argument("--rounds", type=int, default=3, help="torch-then-jax rounds")
  parser.add_argument("--steps", type=int, default=10, help="timed steps per child")
  parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (compiles)")
  parser.add_argument("--batch", type=int, default=100)
  parser.add_argument("--threads", type=int, default=cores(), help="torch.set_num_threads")
  parser.add_argument("--conv-impl", choices=("matmul", "xla"), default="matmul")
  parser.add_argument("--side", choices=("torch", "jax"), help=argparse.SUPPRESS)
  parser.add_argument("--round", type=int, default=0, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.side:
    print(json.dumps((run_torch if args.side == "torch" else run_jax)(args)), flush=True)
    return
  if not os.access(args.torch_python, os.X_OK):
    sys.exit(f"pythae_ref: no interpreter at {args.torch_python}; make one with "
             "`python3.11 -m venv /work/venv-pythae && /work/venv-pythae/bin/pip install "
             "torch==2.13.0 pythae==0.1.2` or pass --torch-python")
  load_before = os.getloadavg()
  rows = {"torch": [], "jax": []}
  for r in range(args.rounds):
    # Interleaved, so drift in the machine's load falls on both sides alike.
    rows["torch"].append(child("torch", args, args.torch_python, r))
    rows["jax"].append(child("jax", args, sys.executable, r))
  load_after = os.getloadavg()
  flops = 3 * forward_flops() * args.batch
  cpu = {side: statistics.median([t for row in rs for t in row["cpu_s"]])
         for side, rs in rows.items()}
  print(json.dumps({
      "bench": "pythae_ref", "side": "summary", "rounds": args.rounds, "steps": args.steps,
      "batch": args.batch, "cores": cores(), "conv_impl": args.conv_impl,
      "torch_cpu_s_per_step": round(cpu["torch"], 4), "jax_cpu_s_per_step": round(cpu["jax"], 4),
      "jax_over_torch": round(cpu["jax"] / cpu["torch"], 3),
      "round_medians": {side: [row["cpu_s_per_step"] for row in rs] for side, rs in rows.items()},
      "gflop_per_step": round(flops / 1e9, 2),
      "torch_gflop_per_cpu_s": round(flops / cpu["torch"] / 1e9, 2),
      "jax_gflop_per_cpu_s": round(flops / cpu["jax"] / 1e9, 2),
      "load_before": [round(l, 2) for l in load_before],
      "load_after": [round(l, 2) for l in load_after],
  }), flush=True)


if __name__ == "__main__":
  main()
