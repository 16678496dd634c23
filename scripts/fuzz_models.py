"""A longer run of the model-loader fuzz suite (``tests/infer/test_model_fuzz.py``).

    .venv/bin/python scripts/fuzz_models.py --cases 500 --seed 1

Each case mutates ``models/seedlike.onnx`` (bytes flipped or truncated,
metadata removed or set to hostile values, the graph edited; see
``tests/infer/model_mutations.py``) and checks that ``Denoiser(path,
device="cpu")`` either raises ``ModelLoadError`` or loads and denoises a small
image correctly. A case that breaks the contract is printed with its index, kind
and detail (rerun it with ``--only INDEX``); a case that runs longer than
``--timeout`` seconds ends the run with a traceback (faulthandler), so a hang
cannot go unnoticed. Exit status 1 when any case failed.
"""

from __future__ import annotations

import argparse
import collections
import faulthandler
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.infer import model_mutations as mutations  # noqa: E402


def run(cases: list[int], seed: int, timeout: float) -> int:
    """Run ``cases`` of the run seeded ``seed``; print a summary; the number that failed."""
    reference = mutations.reference_output()
    outcomes: collections.Counter[tuple[str, str]] = collections.Counter()
    slowest = (0.0, -1)
    failed = 0
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for index in cases:
            case = mutations.make_case(seed, index)
            faulthandler.dump_traceback_later(timeout, exit=True)
            try:
                outcome, seconds = mutations.check_case(case, Path(tmp), reference)
            except Exception:  # the contract is broken: report the case and go on
                failed += 1
                outcome, seconds = "FAILED", 0.0
                print(f"case {index} ({case.kind}: {case.detail}) FAILED", flush=True)
                traceback.print_exc(limit=3)
            finally:
                faulthandler.cancel_dump_traceback_later()
            outcomes[(case.kind, outcome)] += 1
            slowest = max(slowest, (seconds, index))
    total = time.perf_counter() - t0
    print(
        f"{len(cases)} cases (seed {seed}) in {total:.1f} s; slowest case {slowest[1]}: "
        f"{slowest[0]:.2f} s; {failed} failed"
    )
    for (kind, outcome), count in sorted(outcomes.items()):
        print(f"  {kind:<13} {outcome:<8} {count}")
    return failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=500, help="number of cases")
    parser.add_argument("--seed", type=int, default=1, help="seed of the run (CI uses 0)")
    parser.add_argument("--only", type=int, default=None, help="run this case index alone")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per case")
    args = parser.parse_args()
    cases = [args.only] if args.only is not None else list(range(args.cases))
    sys.exit(1 if run(cases, args.seed, args.timeout) else 0)


if __name__ == "__main__":
    main()
