"""The parameter update of one training step of a tiny landmark model, run by tests/test_distributed.py under torchrun
(N ranks) or alone.

Every rank builds the same model from the same seed and takes its share of one global batch: B faces repeated
`copies` times, so that batch-norm statistics on a rank's share equal those on the whole batch (gloo has no SyncBN)."""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch.utils.data import BatchSampler, SequentialSampler

from facelm.distributed import RankShare, close_distributed, data_parallel, init_distributed, world_from_env
from facelm.losses import get_coord_loss, landmark_loss
from facelm.models import create_model
from facelm.precision import head_output

SIZE, FACES = 32, 4


def global_batch(copies: int) -> dict:
    generator = torch.Generator().manual_seed(1)
    image = torch.randn(FACES, 3, SIZE, SIZE, generator=generator)
    target = torch.rand(FACES, 68, 2, generator=generator) * 0.6 + 0.2
    return {"image": image.repeat(copies, 1, 1, 1), "target": target.repeat(copies, 1, 1),
            "weight": torch.ones(FACES * copies, 68)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--copies", type=int, required=True)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    ranks = world_from_env()
    device = init_distributed("cpu", ranks)
    torch.manual_seed(0)
    model = create_model("mobilenetv2_035", heads={"300w": 68}, input_size=SIZE)
    batch = global_batch(args.copies)
    (indices,) = list(RankShare(BatchSampler(SequentialSampler(range(FACES * args.copies)), FACES * args.copies, False),
                                ranks))
    local = {key: value[indices] for key, value in batch.items()}
    coord_loss = get_coord_loss("l1")

    def step(b: dict):
        pred = head_output(model, model.forward_features(b["image"]), "300w")
        return landmark_loss(pred, b["target"], b["weight"], SIZE, coord_loss)

    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    parallel_step = data_parallel(model, step, ranks, device)  # held: DDP's backward hooks need it alive
    loss, _ = parallel_step(local)
    loss.backward()
    optimizer.step()
    if ranks.main:
        torch.save({name: p.detach() - before[name] for name, p in model.named_parameters()}, args.out)
    close_distributed(ranks)


if __name__ == "__main__":
    main()
