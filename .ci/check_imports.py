"""Enforce package boundaries: packages talk only through `tinylm.<pkg>` top-level names.

Rules, checked statically with `ast` over every .py file of every member (src and tests):
- a module of package P may import `tinylm.P.<anything>` (its own internals);
- it may import another package Q only as `tinylm.Q` (`import tinylm.Q`, `from tinylm.Q import x`),
  never `tinylm.Q.sub`, and only if the edge P -> Q is allowed below;
- every name imported `from tinylm.Q` must be listed in Q's `__all__`.
Root `tests/` and `bench/` may use every package, but also only through top-level names.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ALLOWED = {
    "bpe": set(),
    "nn": set(),
    "optim": set(),
    "train": {"nn", "optim", "bpe"},
    "apps": {"bpe", "nn", "optim", "train"},
}
EVERYTHING = set(ALLOWED)


def package_dirs() -> dict[str, Path]:
    dirs = {name: ROOT / "packages" / name for name in ALLOWED if name != "apps"}
    dirs["apps"] = ROOT / "apps"
    return dirs


def exported_names(pkg_dir: Path, name: str) -> set[str] | None:
    init = pkg_dir / "src" / "tinylm" / name / "__init__.py"
    tree = ast.parse(init.read_text(), str(init))
    for node in tree.body:
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets = [node.target]
        for target in targets:
            if isinstance(target, ast.Name) and target.id == "__all__":
                return set(ast.literal_eval(node.value))
    return None


def imported(tree: ast.AST):
    """Yield (lineno, dotted module, names imported from it or None)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, None
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module, [a.name for a in node.names]


def check_file(path: Path, owner: str | None, allowed: set[str], exports) -> list[str]:
    errors = []
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    rel = path.relative_to(ROOT)
    for lineno, module, names in imported(tree):
        parts = module.split(".")
        if parts[0] != "tinylm":
            continue
        if len(parts) == 1:
            # `from tinylm import bpe` is the same as `import tinylm.bpe`.
            for name in names or []:
                if name != owner and name not in allowed:
                    errors.append(f"{rel}:{lineno}: {owner or 'root'} may not import tinylm.{name}")
            continue
        target = parts[1]
        if target == owner:
            continue
        if target not in allowed:
            errors.append(f"{rel}:{lineno}: {owner or 'root'} may not import tinylm.{target}")
        elif len(parts) > 2:
            errors.append(
                f"{rel}:{lineno}: import tinylm.{target} only by its top-level names, not {module}"
            )
        elif names is not None and exports.get(target) is not None:
            for name in names:
                if name != "*" and name not in exports[target]:
                    errors.append(f"{rel}:{lineno}: {name!r} is not in tinylm.{target}.__all__")
    return errors


def main() -> int:
    dirs = package_dirs()
    exports = {name: exported_names(d, name) for name, d in dirs.items()}
    errors = [f"{d}: __init__.py has no __all__" for d, e in exports.items() if e is None]
    checked = 0
    for owner, pkg_dir in dirs.items():
        for path in sorted(pkg_dir.rglob("*.py")):
            if ".venv" in path.parts:
                continue
            errors += check_file(path, owner, ALLOWED[owner], exports)
            checked += 1
    for extra in ("tests", "bench"):
        for path in sorted((ROOT / extra).rglob("*.py")):
            errors += check_file(path, None, EVERYTHING, exports)
            checked += 1
    for error in errors:
        print(error)
    print(f"import boundaries: {checked} files checked, {len(errors)} violations")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
