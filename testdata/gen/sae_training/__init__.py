"""Unpickling/pickling stub of jacobdunefsky/transcoder_circuits' `sae_training` package.

Only `sae_training.config.LanguageModelSAERunnerConfig` is needed: the released transcoder
checkpoints pickle an instance of it, so our fixtures must reference the class at exactly that
import path. This package is used by testdata/gen/gen_fixtures.py only; it is not the real
training code (no wandb, no printing).
"""
