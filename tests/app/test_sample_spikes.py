"""The raster of ``make demo``: the first test sample's spike train of every spiking layer."""

from __future__ import annotations

import torch

from spikeforge.app import TrainConfig, data_from_config, model_from_config, sample_spikes
from spikeforge.data import to_time_first


def test_sample_spikes_equal_the_layers_outputs_for_the_first_test_sample() -> None:
    torch.manual_seed(0)
    cfg = TrainConfig(dataset="digits", model="spiking_cnn_tiny", T=4, encoding="rate", v_threshold=0.2)
    data = data_from_config(cfg)
    model = model_from_config(cfg, data).train()
    got = sample_spikes(model, data, cfg)
    assert model.training and list(got) == ["sn1", "sn2"]
    x, _ = data.test[0]
    model.eval()
    seen: dict[str, torch.Tensor] = {}
    hooks = [getattr(model, n).register_forward_hook(lambda m, i, o, n=n: seen.__setitem__(n, o[:, 0]))
             for n in got]
    with torch.no_grad():
        model(to_time_first(x.unsqueeze(0), data.kind, cfg.T, cfg.encoding, torch.Generator().manual_seed(0)))
    for h in hooks:
        h.remove()
    for n, s in got.items():
        assert s.shape == seen[n].shape and s.shape[0] == cfg.T
        assert torch.equal(s.float(), seen[n].float()) and 0 < float(s.float().sum()) < s.numel()
