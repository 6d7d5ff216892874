"""norse on the ``feedback`` graph workload, by hand: a Python loop over time steps with
``nn.Linear`` layers and ``norse.torch.LIFBoxCell`` (no synaptic current:
``v <- v + dt tau_mem_inv (v_leak - v + input)``; with ``dt tau_mem_inv = 0.1`` and inputs
``W / 0.1`` it is the benchmark neuron, with norse's reset to zero), plus the feedback
``z2_{t-1} W_fb`` added to layer 1's input."""

from __future__ import annotations

import os
import sys

from common_torch import block, grads_of, harness, mean_rates

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from graph_common import feedback_data  # noqa: E402

DT = 1e-3
INPUT_SCALE = 1.0 / (1.0 - harness.DECAY)


def build(workload, cfg):
    import norse.torch as norse

    if workload != "feedback":
        raise ValueError(workload)
    torch.manual_seed(0)
    data = feedback_data(cfg)
    h = cfg["hidden"]
    fc1 = torch.nn.Linear(cfg["n_in"], h, bias=False)
    fc2 = torch.nn.Linear(h, h, bias=False)
    fc_fb = torch.nn.Linear(h, h, bias=False)
    with torch.no_grad():
        for layer, w in ((fc1, data["w1"]), (fc2, data["w2"]), (fc_fb, data["w_fb"])):
            layer.weight.copy_(torch.from_numpy(w.T * INPUT_SCALE))
    x = torch.from_numpy(data["x"])
    p = norse.LIFBoxParameters(
        tau_mem_inv=torch.as_tensor((1.0 - harness.DECAY) / DT),
        v_th=torch.as_tensor(harness.THRESHOLD),
        v_reset=torch.as_tensor(0.0),
    )
    cell1, cell2 = norse.LIFBoxCell(p, dt=DT), norse.LIFBoxCell(p, dt=DT)

    def run(x):
        s1 = s2 = None
        spk2 = torch.zeros(x.shape[1], h)
        rec1, rec2 = [], []
        for step in range(x.shape[0]):
            spk1, s1 = cell1(fc1(x[step]) + fc_fb(spk2), s1)
            spk2, s2 = cell2(fc2(spk1), s2)
            rec1.append(spk1)
            rec2.append(spk2)
        return torch.stack(rec1), torch.stack(rec2)

    params = [fc1.weight, fc2.weight, fc_fb.weight]

    def forward():
        with torch.no_grad():
            return run(x)[1]

    def backward():
        run(x)[1].sum().backward()
        return grads_of(params)

    return {
        "forward": forward,
        "backward": backward,
        "block": block,
        "rates": lambda: mean_rates(*run(x)),
        "versions": harness.package_versions("norse", "torch"),
        "implementation": "loop over time: nn.Linear + norse LIFBoxCell, feedback Linear from layer 2's last spikes",
    }


if __name__ == "__main__":
    harness.run_worker(build)
