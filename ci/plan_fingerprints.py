"""Every matrix row's `python -m backend plan --json`, one file per row, for comparing before and after a change.

    python3 ci/plan_fingerprints.py OUT_DIR          # writes OUT_DIR/<variant>.json
    diff -r BEFORE_DIR AFTER_DIR                     # a redesign commit must show no difference

The plan is made with a fixed cache folder and wheelhouse, so paths are the same in every checkout, and a fixed
number of jobs (``auto`` follows the free memory of the moment); the jobs line's text is dropped, and the checkout's own folder reads ``<checkout>``
(so two worktrees compare).  A row the plan refuses is kept as its
one-line error, so a change in a refusal shows too.
"""
import json
import subprocess
import sys
from pathlib import Path

CACHE = "/tmp/vllm-stack-plan-fingerprints/cache"
WHEELHOUSE = "/tmp/vllm-stack-plan-fingerprints/wheelhouse"
CHECKOUT = Path(__file__).resolve().parent.parent


def rows() -> list[dict]:
    listed = subprocess.run([sys.executable, "-m", "backend", "matrix", "--json"],
                            capture_output=True, text=True, check=True)
    return json.loads(listed.stdout)


def plan(row: dict) -> str:
    settings = [f"sm={row['sm']}", f"isa={row['isa']}", f"cuda={row['cuda']}",
                f"cache-dir={CACHE}", f"wheelhouse={WHEELHOUSE}", "jobs=2"]
    command = [sys.executable, "-m", "backend", "plan", "--json"]
    for setting in settings:
        command += ["-C", setting]
    made = subprocess.run(command, capture_output=True, text=True)
    if made.returncode != 0:
        return f"refused (exit {made.returncode}): {made.stderr.strip()}\n"
    document = json.loads(made.stdout)
    for step in document.get("steps", []):
        step.get("jobs", {}).pop("reason", None)
    return json.dumps(document, indent=1, sort_keys=True).replace(str(CHECKOUT), "<checkout>") + "\n"


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for row in rows():
        (out / f"{row['name']}.json").write_text(plan(row))
    print(f"{len(list(out.glob('*.json')))} plans in {out}")


if __name__ == "__main__":
    main()
