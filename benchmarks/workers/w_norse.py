"""norse on the discrete workloads: ``norse.torch.SequentialState(Linear, LIF, Linear, LIF)``
applied to the whole ``(T, B, ...)`` tensor (norse's LIF module loops over time internally).

norse's LIF is current-based (Euler): ``v <- v + dt/tau_mem (v_leak - v + i)``, then
``i <- i - dt/tau_syn i + input``, reset to ``v_reset``. With ``dt/tau_mem = 0.1`` and
``dt/tau_syn = 1`` it is ``v_t = 0.9 v_{t-1} + 0.1 input_{t-1}``: the benchmark neuron with
inputs ``W / 0.1`` one step later and norse's reset to zero.
"""

from __future__ import annotations

from common_torch import block, grads_of, harness, mean_rates

import torch

DT = 1e-3
INPUT_SCALE = 1.0 / (1.0 - harness.DECAY)


def build(workload, cfg):
    import norse.torch as norse

    torch.manual_seed(0)
    if workload in ("mlp2048", "scaling"):
        data = harness.mlp_data(cfg)
        h = cfg["hidden"]
        l1 = torch.nn.Linear(cfg["n_in"], h, bias=False)
        l2 = torch.nn.Linear(h, h, bias=False)
        w1, w2 = data["w1"].T, data["w2"].T
        x = torch.from_numpy(data["x"])
    elif workload in ("cnn48", "cnn_pool"):
        data = harness.cnn_pool_data(cfg) if workload == "cnn_pool" else harness.cnn_data(cfg)
        c, k = cfg["channels"], cfg["kernel"]
        l1 = torch.nn.Conv2d(cfg["channels_in"], c, k, padding="same", bias=False)
        l2 = torch.nn.Conv2d(c, c, k, padding="same", bias=False)
        w1, w2 = data["k1"], data["k2"]
        x = torch.from_numpy(data["x"])
    else:
        raise ValueError(workload)
    w3 = data["w3"].T if workload == "cnn_pool" else None  # (classes, C * h * w)
    with torch.no_grad():
        l1.weight.copy_(torch.from_numpy(w1 * INPUT_SCALE))
        l2.weight.copy_(torch.from_numpy(w2 * INPUT_SCALE))
    p = norse.LIFParameters(
        tau_syn_inv=torch.as_tensor(1.0 / DT),
        tau_mem_inv=torch.as_tensor((1.0 - harness.DECAY) / DT),
        v_th=torch.as_tensor(harness.THRESHOLD),
        v_reset=torch.as_tensor(0.0),
    )
    if workload in ("cnn48", "cnn_pool"):
        # nn.Conv2d takes (N, C, H, W): apply it to every step by folding time into the batch
        l1, l2 = norse.Lift(l1), norse.Lift(l2)
    if workload == "cnn_pool":
        pool = lambda: norse.Lift(torch.nn.MaxPool2d(cfg["pool"]))  # noqa: E731
        l3 = torch.nn.Linear(w3.shape[1], w3.shape[0], bias=False)
        with torch.no_grad():
            l3.weight.copy_(torch.from_numpy(w3 * INPUT_SCALE))
        layers = [l1, norse.LIF(p, dt=DT), pool(), l2, norse.LIF(p, dt=DT), pool(),
                  norse.Lift(torch.nn.Flatten()), l3, norse.LIF(p, dt=DT)]
        lif_ends = (2, 5)
    else:
        layers = [l1, norse.LIF(p, dt=DT), l2, norse.LIF(p, dt=DT)]
        lif_ends = (2,)
    model = norse.SequentialState(*layers)
    fronts = [norse.SequentialState(*layers[:end]) for end in lif_ends]
    params = [p_ for p_ in model.parameters() if p_.requires_grad and p_.ndim > 1]

    def forward():
        with torch.no_grad():
            return model(x)[0]

    def backward():
        model(x)[0].sum().backward()
        return grads_of(params)

    def rates():
        with torch.no_grad():
            return mean_rates(*[front(x)[0] for front in fronts], model(x)[0])

    return {
        "forward": forward,
        "backward": backward,
        "block": block,
        "rates": rates,
        "versions": harness.package_versions("norse", "torch"),
        "implementation": "norse.torch.SequentialState(Linear, LIF, Linear, LIF) on (T, B, N)",
    }


if __name__ == "__main__":
    harness.run_worker(build)
