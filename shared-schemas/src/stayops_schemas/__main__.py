"""`python -m stayops_schemas DIRECTORY` writes the catalog's JSON Schemas and AsyncAPI document into DIRECTORY."""

import sys
from pathlib import Path

from stayops_schemas.export import export_schemas


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m stayops_schemas DIRECTORY", file=sys.stderr)
        return 2
    written = export_schemas(Path(argv[0]))
    print(f"wrote {len(written)} files to {argv[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
