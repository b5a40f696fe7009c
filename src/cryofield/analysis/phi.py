"""phi: a small network from latents to volume-PC coordinates, trained on maps made on the fly (the seed's 6.2)."""

from __future__ import annotations

import numpy as np


class Phi:
    """phi: an MLP from latents to volume-PC coordinates, with the normalisation it was trained with.

    ``phi(z)`` maps latents (N, zdim) to coordinates (N, L) in the targets' units.
    """

    def __init__(self, net, z_mean: np.ndarray, z_std: np.ndarray, t_mean: np.ndarray, t_std: np.ndarray):
        self.net = net
        self.z_mean, self.z_std, self.t_mean, self.t_std = z_mean, z_std, t_mean, t_std

    def __call__(self, latents: np.ndarray) -> np.ndarray:
        """Volume-PC coordinates (N, L) of latents (N, zdim)."""
        import torch

        x = torch.from_numpy((np.asarray(latents, np.float32) - self.z_mean) / self.z_std)
        with torch.no_grad():
            y = np.concatenate([self.net(x[i:i + 65536]).numpy() for i in range(0, len(x), 65536)])
        return y * self.t_std + self.t_mean

    def state_dict(self) -> dict:
        """Weights and normalisation as tensors (for ``torch.save``; loads with ``weights_only=True``)."""
        import torch

        return {"weights": self.net.state_dict(),
                **{name: torch.from_numpy(np.asarray(getattr(self, name), np.float32))
                   for name in ("z_mean", "z_std", "t_mean", "t_std")}}


def train_phi(z: np.ndarray, targets: np.ndarray, *, epochs: int = 50, batch: int = 64, lr: float = 1e-3,
              hidden: int = 256, layers: int = 3, seed: int = 0) -> tuple[Phi, dict]:
    """Fit phi, an MLP from latents to volume-PC coordinates, with a 3:1 training/validation split.

    The weights of the epoch with the lowest validation loss are kept (the seed monitors
    the held-out loss against overfitting).

    Parameters
    ----------
    z : ndarray, shape (S, zdim)
    targets : ndarray, shape (S, L)
        The volume-PC coordinates of each sample's map.
    epochs, batch, lr : int, int, float
        Training: Adam on the mean squared error of standardised targets.
    hidden, layers : int
        Width and hidden layers of the MLP (ReLU).
    seed : int

    Returns
    -------
    (Phi, dict)
        The fitted map, and a record: training and validation losses per epoch, the best
        epoch, and the validation R^2 of each PC.
    """
    import torch
    from torch import nn

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(z))
    n_train = max(1, int(round(0.75 * len(z))))
    train_rows, val_rows = order[:n_train], order[n_train:]
    if len(val_rows) == 0:
        val_rows = train_rows
    z = np.asarray(z, np.float32)
    targets = np.asarray(targets, np.float32)
    z_mean, z_std = z[train_rows].mean(0), z[train_rows].std(0) + 1e-6
    t_mean, t_std = targets[train_rows].mean(0), targets[train_rows].std(0) + 1e-6

    torch.manual_seed(seed)
    dims = [z.shape[1]] + [hidden] * layers
    blocks: list[nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:]):
        blocks += [nn.Linear(a, b), nn.ReLU()]
    net = nn.Sequential(*blocks, nn.Linear(dims[-1], targets.shape[1]))
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    x_all = torch.from_numpy((z - z_mean) / z_std)
    y_all = torch.from_numpy((targets - t_mean) / t_std)
    x_train, y_train, x_val, y_val = x_all[train_rows], y_all[train_rows], x_all[val_rows], y_all[val_rows]
    generator = torch.Generator().manual_seed(seed)
    record: dict = {"train_loss": [], "val_loss": []}
    best_loss, best_state, best_epoch = np.inf, None, -1
    for epoch in range(epochs):
        net.train()
        total = 0.0
        for batch_rows in torch.randperm(len(x_train), generator=generator).split(batch):
            loss = ((net(x_train[batch_rows]) - y_train[batch_rows]) ** 2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(batch_rows)
        net.eval()
        with torch.no_grad():
            val = float(((net(x_val) - y_val) ** 2).mean())
        record["train_loss"].append(round(total / len(x_train), 6))
        record["val_loss"].append(round(val, 6))
        if val < best_loss:
            best_loss, best_epoch = val, epoch
            best_state = {name: v.clone() for name, v in net.state_dict().items()}
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    with torch.no_grad():
        predicted = net(x_val).numpy()
    truth = y_val.numpy()
    residual = ((predicted - truth) ** 2).sum(0)
    spread = ((truth - truth.mean(0)) ** 2).sum(0) + 1e-12
    record.update(best_epoch=best_epoch, val_r2=[round(float(v), 4) for v in 1 - residual / spread],
                  train=len(train_rows), validation=len(val_rows))
    return Phi(net, z_mean, z_std, t_mean, t_std), record
