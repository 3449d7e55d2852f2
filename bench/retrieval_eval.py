"""Retrieval quality per scenario pack on its eval questions: hit@1, hit@k, MRR, overall and per language.

Run: .venv/bin/python bench/retrieval_eval.py --profile offline [--k 4]
"""

from __future__ import annotations

import argparse
import json

from polyglm.platform.loader import load_platform
from polyglm.scenarios.loader import list_packs, load_pack
from polyglm.scenarios.retrieval import build_retriever, evaluate_retrieval


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", default="offline")
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    embedder = load_platform(args.profile).embedder
    results = {}
    for name in list_packs():
        pack = load_pack(name)
        results[name] = evaluate_retrieval(pack, build_retriever(pack, embedder), k=args.k)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"profile {args.profile}, k={args.k}")
    for name, r in results.items():
        per_lang = "  ".join(
            f"{lang}: {v['hit@1']:.2f}/{v[f'hit@{args.k}']:.2f}/{v['mrr']:.3f} (n={v['items']})"
            for lang, v in sorted(r["by_lang"].items())
        )
        print(f"{name:18s} n={r['items']:3d} hit@1 {r['hit@1']:.2f} hit@{args.k} {r[f'hit@{args.k}']:.2f} "
              f"MRR {r['mrr']:.3f}   {per_lang}")  # fmt: skip


if __name__ == "__main__":
    main()
