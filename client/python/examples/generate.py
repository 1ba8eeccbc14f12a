#!/usr/bin/env python3
"""Streams one generation to stdout as it arrives; the finish to stderr.

    client/python/examples/generate.py --temperature 0 --max-tokens 60 "And God said"
"""
import sys

from common import connect, parser


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--temperature", type=float)
    p.add_argument("--max-tokens", type=int, default=60)
    p.add_argument("prompt")
    args = p.parse_args()
    with connect(args) as client:
        generation = client.generate(args.prompt, temperature=args.temperature, max_tokens=args.max_tokens)
        for piece in generation:
            print(piece, end="", flush=True)
        print()
        f = generation.finished
        print(f"[finished] reason={generation.reason} tokens={f.usage.generated_tokens} position={f.position} "
              f"ids={generation.token_ids[:8]}...", file=sys.stderr)


if __name__ == "__main__":
    main()
