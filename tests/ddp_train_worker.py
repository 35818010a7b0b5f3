"""Worker for tests/test_ddp.py, launched by torchrun: train(cfg) on 2 gloo processes, then
all-gather a checksum of every weight and buffer and write both ranks' checksums (rank 0).

Usage: python -m torch.distributed.run --nproc_per_node 2 tests/ddp_train_worker.py PREPARED RUN OUT_JSON
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speechvq.config import compose  # noqa: E402
from speechvq.training.vqvae import train  # noqa: E402
from vqvae_testutils import micro_overrides  # noqa: E402


def main() -> None:
    prepared, run, out = sys.argv[1:4]
    torch.set_num_threads(1)
    dist.init_process_group("gloo")  # owned here, so train() leaves it open for the all_gather below
    result = train(compose("train", micro_overrides(Path(run), Path(prepared), "trainer.max_steps=4")))
    state = result.model.state_dict()
    names = sorted(state)
    checksum = torch.stack([state[n].double().sum() + (state[n].double() ** 2).sum() for n in names])
    gathered = [torch.empty_like(checksum) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, checksum)
    if dist.get_rank() == 0:
        Path(out).write_text(json.dumps({
            "names": names,
            "checksums": [g.tolist() for g in gathered],
            "codebook_rows_changed": int((state["quantizer.codebook"] != 0).any(dim=1).sum()),
            "step": result.step,
        }))
    dist.barrier()  # both ranks leave together: gloo aborts a rank whose peer tears down mid-exit
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
