"""wae-jax: Wasserstein Auto-Encoders in JAX, from a laptop CPU to TPU sweeps."""
import setuptools

setuptools.setup(
    name="wae-jax",
    version="0.1.0",
    description="Wasserstein Auto-Encoders (WAE-MMD, WAE-GAN) and the VAE baseline in JAX/Flax",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=["wae_jax", "wae_jax.cli", "wae_jax.configs", "wae_jax.evaluators",
              "wae_jax.executors", "wae_jax.launch", "wae_jax.regularisers",
              "wae_jax.searches"],
    package_dir={"wae_jax.launch": "launch"},
    package_data={"wae_jax": ["assets/*.npz"]},
    install_requires=[
        "jax>=0.10",
        "flax>=0.12",
        "optax>=0.2.8",
        "ml-collections>=1.1",
        "orbax-checkpoint>=0.12",
        "clu>=0.0.12",
        "tensorflow-datasets>=4.9.9",
        "tensorboard",  # Event files are written with its protos (wae_jax/events.py), not TF.
        "numpy",
        "pillow",
        "matplotlib",
        "pandas",
        "pyarrow",  # Parquet output of wae-results.
        "ray>=2.40",  # The sweep runner's fan-out, on a laptop and on a TPU cluster.
        "optuna>=5.0",  # A sweep's mirror as Optuna studies (wae_jax/mirror.py).
        "optuna-dashboard>=0.21",  # Serves that mirror.
        "scikit-learn",  # Optuna's fANOVA importances of the mirror; the gmm latent sampler.
    ],
    extras_require={
        # TensorFlow (1.3 GB) only where it is used: tfds sources read through tf.data, and
        # gs:// paths go through tf.io.gfile (epath's backend for them); a gs:// lock is
        # created and taken over through Cloud Storage's own client (wae_jax/lock.py).
        # launch/remote.py's PIP_PACKAGES installs the same on TPU workers.
        "tf": ["tensorflow-cpu>=2.20", "google-cloud-storage"],
        # The README's test command installs both: the tfds tests read through tf.data.
        "test": ["pytest", "pytest-timeout", "pytest-xdist", "POT"],
        # The docs site (docs/, `sphinx-build -W -b html docs OUT`); CI builds it.
        "docs": ["sphinx>=7", "myst-parser>=3", "furo"],
    },
    entry_points={
        "console_scripts": [
            "wae-train=wae_jax.cli.train:main",
            "wae-launch=wae_jax.launch.cli:main",
            "wae-sweep=wae_jax.cli.sweep:main",
            "wae-results=wae_jax.cli.results:main",
            "wae-eval=wae_jax.cli.evaluate:main",
        ],
    },
)
