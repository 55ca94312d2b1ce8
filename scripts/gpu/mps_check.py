"""Does CUDA MPS let several small-model processes share one GPU? Times a launch-bound loop (matmuls of a
135M model's shapes) alone and in N processes at once. It needs only PyTorch, which the GPU image has: no bundle.

    python scripts/gpu/mps_check.py [N]                                     # without MPS
    nvidia-cuda-mps-control -d && python scripts/gpu/mps_check.py [N]       # with MPS (scripts/gpu/star_rounds.sh)
"""

import subprocess
import sys
import time

WORK = """
import torch, time
x = torch.randn(16 * 150, 576, device="cuda", dtype=torch.bfloat16)
w = torch.randn(576, 1536, device="cuda", dtype=torch.bfloat16)
for _ in range(50): x @ w
torch.cuda.synchronize(); t = time.perf_counter()
for _ in range(6000): (x @ w).relu_()
torch.cuda.synchronize(); print(round(time.perf_counter() - t, 2))
"""


def run(n: int) -> float:
    start = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-c", WORK], stdout=subprocess.PIPE, text=True) for _ in range(n)]
    each = [p.communicate()[0].strip() for p in procs]
    print(f"{n} process(es): wall {time.perf_counter() - start:.1f} s, loop seconds each {each}", flush=True)
    return time.perf_counter() - start


if __name__ == "__main__":
    run(1)
    run(int(sys.argv[1]) if len(sys.argv) > 1 else 4)
