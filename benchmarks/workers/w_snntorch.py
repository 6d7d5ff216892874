"""snntorch on the discrete workloads, written as in snntorch's tutorials: a Python loop over
time steps calling ``nn.Linear``/``nn.Conv2d`` and ``snn.Leaky(beta=0.9)`` (subtractive reset)."""

from __future__ import annotations

from common_torch import block, grads_of, harness, mean_rates

import torch


def build(workload, cfg):
    import snntorch as snn

    torch.manual_seed(0)
    if workload in ("mlp2048", "scaling"):
        data = harness.mlp_data(cfg)
        h = cfg["hidden"]
        fc1 = torch.nn.Linear(cfg["n_in"], h, bias=False)
        fc2 = torch.nn.Linear(h, h, bias=False)
        with torch.no_grad():
            fc1.weight.copy_(torch.from_numpy(data["w1"].T))
            fc2.weight.copy_(torch.from_numpy(data["w2"].T))
    elif workload == "cnn48":
        data = harness.cnn_data(cfg)
        c, k = cfg["channels"], cfg["kernel"]
        fc1 = torch.nn.Conv2d(cfg["channels_in"], c, k, padding="same", bias=False)
        fc2 = torch.nn.Conv2d(c, c, k, padding="same", bias=False)
        with torch.no_grad():
            fc1.weight.copy_(torch.from_numpy(data["k1"]))
            fc2.weight.copy_(torch.from_numpy(data["k2"]))
    else:
        raise ValueError(workload)
    x = torch.from_numpy(data["x"])  # (T, B, ...)
    lif1 = snn.Leaky(beta=harness.DECAY, threshold=harness.THRESHOLD, reset_mechanism="subtract")
    lif2 = snn.Leaky(beta=harness.DECAY, threshold=harness.THRESHOLD, reset_mechanism="subtract")

    def run(x):
        mem1, mem2 = lif1.init_leaky(), lif2.init_leaky()
        spk1_rec, spk2_rec = [], []
        for step in range(x.shape[0]):
            spk1, mem1 = lif1(fc1(x[step]), mem1)
            spk2, mem2 = lif2(fc2(spk1), mem2)
            spk1_rec.append(spk1)
            spk2_rec.append(spk2)
        return torch.stack(spk1_rec), torch.stack(spk2_rec)

    params = [fc1.weight, fc2.weight]

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
        "implementation": "loop over time: nn.Linear + snn.Leaky(beta=0.9, subtract reset)",
    }


if __name__ == "__main__":
    harness.run_worker(build)
