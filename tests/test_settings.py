"""The run settings: a train config's `auto` values resolved once for a device, and the noise
schedule made once, so every phase of a run agrees on them."""

import pytest
import torch

from archsearch.diffusion import NoiseSchedule
from archsearch.errors import ConfigError
from archsearch.schema.train import TrainConfig
from archsearch.settings import resolve_run_settings


def test_cpu_settings_are_eager_fp32():
    s = resolve_run_settings(TrainConfig(), "cpu")
    assert (s.precision, s.compile, s.channels_last, s.fused_adamw, s.tf32) == ("fp32", False, False, False, False)
    assert s.device == torch.device("cpu") and s.memory_format == torch.contiguous_format
    s = resolve_run_settings(TrainConfig(channels_last="on", precision="bf16", compile="on"), "cpu")
    assert s.channels_last and s.memory_format == torch.channels_last and s.precision == "bf16" and s.compile


@pytest.mark.parametrize("channels_last, expected", [("auto", True), ("on", True), ("off", False)])
def test_cuda_settings_are_fused_tf32_and_channels_last_by_default(channels_last, expected):
    # An explicit precision resolves without asking the GPU, so this runs on any machine.
    s = resolve_run_settings(TrainConfig(precision="fp32", channels_last=channels_last), torch.device("cuda"))
    assert (s.tf32, s.fused_adamw, s.channels_last, s.precision) == (True, True, expected, "fp32")


@pytest.mark.parametrize("kind, steps", [("cosine", 1000), ("linear", 50)])
def test_schedule_and_prediction_come_from_the_config(kind, steps):
    s = resolve_run_settings(TrainConfig(schedule=kind, num_timesteps=steps, prediction="v"), "cpu")
    expected = NoiseSchedule.create(kind, steps)
    assert s.prediction == "v" and s.schedule.kind == kind and s.schedule.num_timesteps == steps
    assert torch.equal(s.schedule.alphas_cumprod, expected.alphas_cumprod) and s.schedule.betas.device.type == "cpu"


def test_records_compare_and_hash_by_their_choices_not_the_schedule_tensors():
    a, b = (resolve_run_settings(TrainConfig(lr=lr), "cpu") for lr in (1e-3, 1e-4))
    assert a == b and hash(a) == hash(b)  # the optimization settings are not run settings
    assert a != resolve_run_settings(TrainConfig(prediction="v"), "cpu")


def test_an_unknown_precision_is_located_at_train_precision():
    # Validation stops it first for users (pydantic's `train.precision` error); the resolver says the same.
    with pytest.raises(ConfigError, match="unknown precision 'fp16'") as info:
        resolve_run_settings(TrainConfig.model_construct(**{**TrainConfig().model_dump(), "precision": "fp16"}), "cpu")
    assert info.value.path == "train.precision"
