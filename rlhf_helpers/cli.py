"""The helper package's own subcommands of ``rlhf-course``.

    rlhf-course build-world [--out DIR] [--seed N] [--part P]   rebuild the tiny model world (or one part)
    rlhf-course info                                 show the profile, what it loads, and the labs
    rlhf-course labels merge FILE... --out PATH       merge a class's lab 8 label files

The ``rlhf-course`` command itself is the grader's (``autograder.cli``): it adds
these with :func:`register`. ``python -m rlhf_helpers.cli`` runs them alone.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _cmd_build_world(args: argparse.Namespace) -> int:
    from rlhf_helpers.build_world import build_math_world, build_world

    builders = {"reviews": [build_world], "math": [build_math_world], "all": [build_world, build_math_world]}
    passed = [build(out_dir=args.out, seed=args.seed, quick=args.quick)["gates_passed"] for build in builders[args.part]]
    return 0 if all(passed) else 1


def _cmd_info(args: argparse.Namespace) -> int:
    from rlhf_helpers.config import get_device, get_profile

    profile = get_profile(args.profile)
    print(f"profile: {profile.name} ({profile.description})")
    print(f"policy:  {profile.policy}")
    print(f"reward:  {profile.reward}")
    print(f"reviews: {profile.reviews}")
    print(f"math:    {profile.math_policy} on {profile.math_problems} (lab 9)")
    print(f"device:  {get_device()}")
    labs = course_labs()
    if labs:
        print(f"labs ({LABS_DIR}):")
        for lab_id, title in labs:
            width = max(len(lab_id) for lab_id, _ in labs)
            print(f"  {lab_id:{width}}  {title}")
    return 0


def _cmd_labels(args: argparse.Namespace) -> int:
    from rlhf_helpers import class_merge

    paths = [Path(p) for p in args.files]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"no such label file: {', '.join(missing)}")
    report = class_merge.merge_label_files(paths, task=args.task)
    print(report.summary())
    for problem in report.problems[:20]:
        print(f"  skipped: {problem}")
    if len(report.problems) > 20:
        print(f"  ... and {len(report.problems) - 20} more")
    if not report.rows:
        print("no pair has a majority preference: nothing written", file=sys.stderr)
        return 1
    out = class_merge.write_class_preferences(report, args.out)
    print(f"wrote {len(report.rows)} preference rows to {out}; hand it out as class_preferences.jsonl in lab 8's folder")
    return 0


LABS_DIR = Path(__file__).resolve().parents[1] / "labs"
"""The learners' copies of the labs, beside the package (``make lab`` opens this folder)."""


def course_labs(folder: Path = LABS_DIR) -> list[tuple[str, str]]:
    """``(lab_id, title)`` of every lab under ``folder`` (``<lab_id>/<lab_id>.ipynb``), in order;
    the title is the notebook's first heading."""
    import json

    found = []
    for nb in sorted(folder.glob("*/*.ipynb")):
        if nb.stem != nb.parent.name:
            continue
        try:
            cells = json.loads(nb.read_text())["cells"]
            first = "".join(cells[0]["source"]).strip().splitlines()[0] if cells else ""
        except (ValueError, KeyError, IndexError):
            first = ""
        found.append((nb.stem, first.lstrip("# ").strip()))
    return found


def register(sub) -> None:
    """Add ``build-world``, ``info`` and ``labels`` to an argparse subparsers object."""
    p = sub.add_parser("build-world", help="rebuild the offline tiny model world from nothing")
    p.add_argument("--out", default=None, help="output folder (default: the package's world/ folder)")
    p.add_argument("--seed", type=int, default=0, help="seed for everything (default 0)")
    p.add_argument("--quick", action="store_true", help="a few training steps only (for tests; gates not enforced)")
    p.add_argument("--part", choices=["all", "reviews", "math"], default="all",
                   help="which part to build: reviews (labs 1-8), math (lab 9's arithmetic, in math/), or all "
                        "(default); a part built alone leaves the other's files as they are")
    p.set_defaults(func=_cmd_build_world)

    p = sub.add_parser("info", help="show which profile, models and device the kit will use, and the labs")
    p.add_argument("--profile", default=None, help="tiny or hub (default: $RLHF_COURSE_PROFILE or tiny)")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("labels", help="merge a class's lab 8 label files into one preference set")
    p.add_argument("action", choices=["merge"], help="merge: majority vote per pair, with duplicates, conflicts "
                                                     "and agreement between labellers reported")
    p.add_argument("files", nargs="+", metavar="FILE", help="labels.jsonl files (e.g. submitted/*/lab8_human_feedback/labels.jsonl)")
    p.add_argument("--out", required=True, metavar="PATH", help="where the merged JSON Lines go (class_preferences.jsonl)")
    p.add_argument("--task", default="preference", choices=["preference", "blind"],
                   help="which labels to merge (default: preference)")
    p.set_defaults(func=_cmd_labels)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rlhf_helpers.cli", description="the RLHF course kit's model world")
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    return parser


def main(argv: list[str] | None = None, parser: argparse.ArgumentParser | None = None) -> int:
    args = (parser or build_parser()).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        print(f"rlhf-course: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
