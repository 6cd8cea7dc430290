#!/usr/bin/env python3
"""The house rules of issue 17, checked from the source text.

1. No Rust source file over 800 lines (src/, crates/*/src, tests/, benches/).
2. No function over 100 lines outside tests (`#[cfg(test)]` modules, files
   under tests/, files under any tests/ directory inside a crate's src/,
   and files named tests.rs or *_tests.rs are exempt).
3. No import cycle between modules: in every crate, for every module, its
   child modules (each with its whole subtree) form a graph with an edge
   A -> B when code in A names B (`crate::…`, `super::…`, `self::…` paths and
   `use` lists); that graph must have no cycle. The parent naming a child,
   and a child naming its parent's own items, are not edges.

Usage: python3 .ci/house.py [ROOT]   (exit 1 and a list when a rule fails)
"""

import os
import re
import sys

MAX_FILE = 800
MAX_FN = 100


def rust_files(root):
    for top in ["src", "tests", "benches", "crates"]:
        base = os.path.join(root, top)
        for d, dirs, files in os.walk(base):
            dirs[:] = [x for x in dirs if x not in ("target", "fuzz")]
            for f in files:
                if f.endswith(".rs"):
                    yield os.path.join(d, f)


def strip(text):
    """Source with comments, strings and char literals blanked (lines kept)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:]):
            hashes = re.match(r"r(#*)\"", text[i:]).group(1)
            end = '"' + hashes
            j = text.find(end, i + 2 + len(hashes))
            j = n if j < 0 else j + len(end)
            out.append('""' + re.sub(r"[^\n]", " ", text[i + 2 : j])[2:])
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('"' + re.sub(r"[^\n]", " ", text[i + 1 : j]) + '"')
            i = j + 1
        elif c == "'" and re.match(r"'(\\.|[^\\'])'|'\\u\{[0-9a-fA-F]+\}'|'\\x[0-9a-fA-F]{2}'", text[i:]):
            m = re.match(r"'(\\.|[^\\'])'|'\\u\{[0-9a-fA-F]+\}'|'\\x[0-9a-fA-F]{2}'", text[i:])
            out.append("' '" + " " * (len(m.group(0)) - 3))
            i += len(m.group(0))
        else:
            out.append(c)
            i += 1
    return "".join(out)


def test_ranges(code):
    """Line ranges (1-based, inclusive) of `#[cfg(test)]` items."""
    ranges = []
    lines = code.split("\n")
    for no, line in enumerate(lines, 1):
        if re.search(r"#\[cfg\(test\)\]", line):
            start = sum(len(l) + 1 for l in lines[: no - 1])
            end = block_end(code, code.find("\n", start))
            if end is None:
                # `#[cfg(test)] mod tests;` — nothing inline.
                continue
            ranges.append((no, code.count("\n", 0, end) + 1))
    return ranges


def block_end(code, pos):
    """Offset of the `}` closing the first `{` after pos (None before a `;`)."""
    depth = 0
    i = pos
    while i < len(code):
        c = code[i]
        if c == ";" and depth == 0:
            return None
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


FN = re.compile(r"^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+(\w+)")


def long_functions(path, code):
    tests = test_ranges(code)
    found = []
    lines = code.split("\n")
    offsets = [0]
    for l in lines:
        offsets.append(offsets[-1] + len(l) + 1)
    for no, line in enumerate(lines, 1):
        m = FN.match(line)
        if not m or any(a <= no <= b for a, b in tests):
            continue
        end = block_end(code, offsets[no - 1])
        if end is None:
            continue
        length = code.count("\n", offsets[no - 1], end) + 1
        if length > MAX_FN:
            found.append((path, no, m.group(6), length))
    return found


def is_test_file(rel):
    """Whether a file (path relative to the root) holds only tests: under the
    top-level tests/, under a tests/ directory inside src/ or crates/*/src,
    or named tests.rs or *_tests.rs."""
    parts = rel.split(os.sep)
    name = parts[-1]
    if parts[0] == "tests" or name == "tests.rs" or name.endswith("_tests.rs"):
        return True
    if parts[0] == "src":
        inner = parts[1:-1]
    elif parts[0] == "crates" and len(parts) > 3 and parts[2] == "src":
        inner = parts[3:-1]
    else:
        return False
    return "tests" in inner


def crate_roots(root):
    yield "cardswitch", os.path.join(root, "src")
    crates = os.path.join(root, "crates")
    if os.path.isdir(crates):
        for name in sorted(os.listdir(crates)):
            src = os.path.join(crates, name, "src")
            if os.path.isdir(src):
                yield name, src


def module_path(src, path):
    rel = os.path.relpath(path, src)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return tuple(rel)


def declared_path(code, parent_file, src):
    """`#[path = "…"] mod x;` redirections: file -> module path."""
    out = {}
    for m in re.finditer(r'#\[path\s*=\s*"([^"]+)"\]\s*(pub(\([^)]*\))?\s+)?mod\s+(\w+)\s*;', code):
        target = os.path.normpath(os.path.join(os.path.dirname(parent_file), m.group(1)))
        out[target] = m.group(4)
    return out


USE_PATH = re.compile(r"\b(crate|super|self)((?:::\w+)+)")


def references(code, module):
    """Absolute module paths named by code in `module`."""
    refs = set()
    for m in USE_PATH.finditer(code):
        head, rest = m.group(1), [p for p in m.group(2).split("::") if p]
        if head == "crate":
            base = []
        elif head == "self":
            base = list(module)
        else:
            base = list(module[:-1])
            while rest and rest[0] == "super":
                base = base[:-1]
                rest = rest[1:]
        refs.add(tuple(base + rest))
    # `use crate::{a::X, b::Y}` and `use super::{…}` lists.
    for m in re.finditer(r"\buse\s+(crate|super|self)::\{([^;]*)\};", code, re.S):
        head = m.group(1)
        base = [] if head == "crate" else list(module) if head == "self" else list(module[:-1])
        for item in re.split(r"[,{}]", m.group(2)):
            item = item.strip()
            if item:
                refs.add(tuple(base + item.split("::")[:1]))
    return refs


def cycles(root):
    problems = []
    for crate, src in crate_roots(root):
        files = {}
        redirect = {}
        for d, _, fs in os.walk(src):
            for f in fs:
                if f.endswith(".rs"):
                    p = os.path.join(d, f)
                    files[p] = strip(open(p, encoding="utf-8").read())
        for p, code in files.items():
            for target, name in declared_path(code, p, src).items():
                redirect[target] = module_path(src, p) + (name,)
        modules = {}
        for p, code in files.items():
            mod = redirect.get(os.path.normpath(p), module_path(src, p))
            modules.setdefault(mod, []).append(code)
        known = set(modules)
        edges = {}
        for mod, codes in modules.items():
            for code in codes:
                for ref in references(code, mod):
                    # The longest known module that ref names.
                    target = None
                    for k in range(len(ref), 0, -1):
                        if ref[:k] in known:
                            target = ref[:k]
                            break
                    if target is None:
                        continue
                    # Siblings: the children of the common parent.
                    common = 0
                    while common < min(len(mod), len(target)) and mod[common] == target[common]:
                        common += 1
                    if common == len(mod) or common == len(target):
                        continue  # parent and descendant
                    a, b = mod[: common + 1], target[: common + 1]
                    edges.setdefault(a, set()).add(b)
        for cycle in find_cycles(edges):
            problems.append(f"{crate}: import cycle " + " -> ".join("::".join(m) or "crate" for m in cycle))
    return problems


def find_cycles(edges):
    """One cycle per strongly connected component of more than one node."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp) + [sorted(comp)[0]])

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
    problems = []
    for path in sorted(rust_files(root)):
        text = open(path, encoding="utf-8").read()
        rel = os.path.relpath(path, root)
        n = text.count("\n")
        if n > MAX_FILE:
            problems.append(f"{rel}: {n} lines (at most {MAX_FILE})")
        if is_test_file(rel):
            continue
        for _, no, name, length in long_functions(rel, strip(text)):
            problems.append(f"{rel}:{no}: fn {name} is {length} lines (at most {MAX_FN})")
    problems += cycles(root)
    for p in problems:
        print(p)
    print(f"house: {len(problems)} problem(s)", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
