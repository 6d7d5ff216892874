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
    elif workload in ("cnn48", "cnn_pool"):
        data = harness.cnn_pool_data(cfg) if workload == "cnn_pool" else harness.cnn_data(cfg)
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
    params = [fc1.weight, fc2.weight]
    if workload == "cnn_pool":
        w3 = data["w3"].T  # (classes, C * h * w), PyTorch's flatten order
        fc3 = torch.nn.Linear(w3.shape[1], w3.shape[0], bias=False)
        with torch.no_grad():
            fc3.weight.copy_(torch.from_numpy(w3))
        lif3 = snn.Leaky(beta=harness.DECAY, threshold=harness.THRESHOLD,
                         reset_mechanism="subtract")
        pool = torch.nn.MaxPool2d(cfg["pool"])
        params.append(fc3.weight)

        def run(x):
            mem1, mem2, mem3 = lif1.init_leaky(), lif2.init_leaky(), lif3.init_leaky()
            records = ([], [], [])
            for step in range(x.shape[0]):
                spk1, mem1 = lif1(fc1(x[step]), mem1)
                spk2, mem2 = lif2(fc2(pool(spk1)), mem2)
                spk3, mem3 = lif3(fc3(pool(spk2).flatten(1)), mem3)
                for record, spk in zip(records, (spk1, spk2, spk3)):
                    record.append(spk)
            return tuple(torch.stack(r) for r in records)
    else:
        def run(x):
            mem1, mem2 = lif1.init_leaky(), lif2.init_leaky()
            spk1_rec, spk2_rec = [], []
            for step in range(x.shape[0]):
                spk1, mem1 = lif1(fc1(x[step]), mem1)
                spk2, mem2 = lif2(fc2(spk1), mem2)
                spk1_rec.append(spk1)
                spk2_rec.append(spk2)
            return torch.stack(spk1_rec), torch.stack(spk2_rec)

    def forward():
        with torch.no_grad():
            return run(x)[-1]

    def backward():
        run(x)[-1].sum().backward()
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
