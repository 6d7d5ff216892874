"""snntorch on the ``feedback`` graph workload, by hand: a Python loop over time steps with
``nn.Linear`` layers, ``snn.Leaky(beta=0.9)`` (subtractive reset) and the feedback
``z2_{t-1} W_fb`` added to layer 1's input."""

from __future__ import annotations

import os
import sys

from common_torch import block, grads_of, harness, mean_rates

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from graph_common import feedback_data  # noqa: E402


def build(workload, cfg):
    import snntorch as snn

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
            layer.weight.copy_(torch.from_numpy(w.T))
    x = torch.from_numpy(data["x"])
    lif1 = snn.Leaky(beta=harness.DECAY, threshold=harness.THRESHOLD, reset_mechanism="subtract")
    lif2 = snn.Leaky(beta=harness.DECAY, threshold=harness.THRESHOLD, reset_mechanism="subtract")

    def run(x):
        mem1, mem2 = lif1.init_leaky(), lif2.init_leaky()
        spk2 = torch.zeros(x.shape[1], h)
        rec1, rec2 = [], []
        for step in range(x.shape[0]):
            spk1, mem1 = lif1(fc1(x[step]) + fc_fb(spk2), mem1)
            spk2, mem2 = lif2(fc2(spk1), mem2)
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
        "versions": harness.package_versions("snntorch", "torch"),
        "implementation": "loop over time: nn.Linear + snn.Leaky, feedback Linear from layer 2's last spikes",
    }


if __name__ == "__main__":
    harness.run_worker(build)
