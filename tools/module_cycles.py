#!/usr/bin/env python3
"""Fails when the library's modules import each other in a loop.

The graph: a file of src/ (one module: src/a/b.rs and src/a/b/mod.rs are
`a::b`) has an arrow to every module it names: `crate::` paths, `super::`
paths, and (in a file that declares them) its child modules by name, in
`use` lines and in code alike. A name a module hands on (`pub use
child::Name`) is followed to the module that defines it: handing a name
on is no dependency of the module's own, and whoever names
`crate::rpc::Client` depends on rpc/client.rs, not on rpc/mod.rs.
Unit tests (`#[cfg(test)] mod ... { }`) are left out, and src/main.rs
(the binary) too.

The graph is checked at every depth: the files themselves, then with the
modules below each depth taken as one (src/rpc/ as `rpc` against
src/security/ as `security`, and so on). Any loop is printed with the
names that make it, and the exit status is 1.

Usage: module_cycles.py [SRC_DIR]   (default: src)
Standard library only; it reads the sources, it runs nothing.
"""

import os
import re
import sys
from collections import defaultdict


def module_of(path, src):
    rel = os.path.relpath(path, src)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib"):
        rel = rel[:-1]
    return tuple(rel)


def strip(text):
    """The code without comments, string and char literals."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif c == "r" and re.match(r'r#*"', text[i:i + 20]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            hashes = re.match(r'r(#*)"', text[i:]).group(1)
            end = text.find('"' + hashes, i + len(hashes) + 2)
            i = n if end < 0 else end + 1 + len(hashes)
            out.append('""')
        elif c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            i += 1
            out.append('""')
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", text[i:i + 4]) or c == "'" and re.match(r"'\\u\{[0-9a-fA-F]+\}'", text[i:i + 12]):
            m = re.match(r"'(\\u\{[0-9a-fA-F]+\}|\\.|[^\\'])'", text[i:])
            i += len(m.group(0))
            out.append("' '")
        else:
            out.append(c)
            i += 1
    return "".join(out)


def drop_tests(code):
    """The code without `#[cfg(test)] mod name { ... }` blocks."""
    while True:
        m = re.search(r"#\[cfg\(test\)\]\s*(pub(\([^)]*\))?\s+)?mod\s+\w+\s*\{", code)
        if not m:
            return code
        depth, i = 1, m.end()
        while i < len(code) and depth:
            depth += {"{": 1, "}": -1}.get(code[i], 0)
            i += 1
        code = code[: m.start()] + code[i:]


IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def use_paths(tree):
    """Expands a use tree (`a::{b, c::{self, d}}`) into paths."""
    tree = tree.strip()
    m = re.match(r"^((?:" + IDENT + r"\s*::\s*)*)\{(.*)\}$", tree, re.S)
    if not m:
        return [[p.strip() for p in re.split(r"::", tree.split(" as ")[0]) if p.strip()]]
    prefix = [p.strip() for p in m.group(1).split("::") if p.strip()]
    inner, parts, depth, cur = m.group(2), [], 0, ""
    for ch in inner:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += {"{": 1, "}": -1}.get(ch, 0)
        cur += ch
    parts.append(cur)
    out = []
    for p in parts:
        if p.strip():
            for sub in use_paths(p):
                out.append(prefix + [s for s in sub if s != "self"])
    return out


def references(code, me, children):
    """The module paths a file names, as lists of segments from the crate
    root."""
    refs = []

    def absolute(segs):
        if not segs:
            return None
        if segs[0] == "crate":
            return segs[1:]
        if segs[0] == "super":
            base = list(me)
            while segs and segs[0] == "super":
                base = base[:-1]
                segs = segs[1:]
            return base + segs
        if segs[0] == "self":
            return list(me) + segs[1:]
        if segs[0] in children:
            return list(me) + segs
        return None

    for m in re.finditer(r"(?<![\w)])use\s+([^;]+);", code):
        for p in use_paths(m.group(1)):
            a = absolute(p)
            if a is not None:
                refs.append(a)
    body = re.sub(r"\buse\s+[^;]+;", " ", code)
    for m in re.finditer(r"(?<![\w:])((?:" + IDENT + r")(?:\s*::\s*" + IDENT + r")+)", body):
        segs = [s.strip() for s in m.group(1).split("::")]
        if segs[0] in ("crate", "super", "self") or segs[0] in children:
            a = absolute(segs)
            if a is not None:
                refs.append(a)
    return refs


def handed_on(code, me, children):
    """The names a module hands on with `pub use` / `pub(crate) use`:
    name -> the path it stands for (from the crate root)."""
    out = {}
    for m in re.finditer(r"\bpub(?:\([^)]*\))?\s+use\s+([^;]+);", code):
        for p in use_paths(m.group(1)):
            if not p:
                continue
            segs = p
            if segs[0] == "crate":
                full = segs[1:]
            elif segs[0] == "super":
                base = list(me)
                while segs and segs[0] == "super":
                    base, segs = base[:-1], segs[1:]
                full = base + segs
            elif segs[0] == "self":
                full = list(me) + segs[1:]
            elif segs[0] in children:
                full = list(me) + segs
            else:
                continue
            out[full[-1]] = full
    return out


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else "src"
    files = {}
    for root, _, names in os.walk(src):
        for name in names:
            path = os.path.join(root, name)
            if name.endswith(".rs") and os.path.relpath(path, src) != "main.rs":
                files[module_of(path, src)] = path
    modules = set(files)
    codes, kids, faces = {}, {}, {}
    for me, path in files.items():
        with open(path, encoding="utf-8") as f:
            code = drop_tests(strip(f.read()))
        kids[me] = set(re.findall(r"(?:^|\n)\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(" + IDENT + r")\s*;", code))
        faces[me] = handed_on(code, me, kids[me])
        # (What a module hands on is not a dependency of its own, unless
        # it uses it itself.)
        codes[me] = re.sub(r"\bpub(?:\([^)]*\))?\s+use\s+[^;]+;", " ", code)
        for name, path in faces[me].items():
            if name != "*" and re.search(r"(?<![\w:])" + re.escape(name) + r"\b", codes[me]):
                codes[me] += "\nuse crate::" + "::".join(path) + ";"

    def resolve(ref, depth=0):
        for k in range(len(ref), -1, -1):
            mod = tuple(ref[:k])
            if mod in modules:
                rest = ref[k:]
                if rest and rest[0] in faces[mod] and depth < 16:
                    return resolve(faces[mod][rest[0]] + rest[1:], depth + 1)
                return mod, "::".join(rest) or "(the module)"
        return None, None

    # file -> file -> the names that tie them
    edges = defaultdict(lambda: defaultdict(set))
    for me in files:
        for ref in references(codes[me], me, kids[me]):
            target, used = resolve(ref)
            if target is not None and target != me:
                edges[me][target].add(used)
    depth = max(len(m) for m in modules)
    found = 0
    seen = set()
    for d in range(1, depth + 1):
        cut = lambda m: m[:d]
        graph = defaultdict(lambda: defaultdict(list))
        for a, targets in edges.items():
            for b, names in targets.items():
                ca, cb = cut(a), cut(b)
                if ca != cb:
                    graph[ca][cb].append((a, b, names))
        for comp, cycle in cycles(graph):
            key = frozenset(comp)
            if key in seen:
                continue
            seen.add(key)
            found += 1
            show = lambda m: "::".join(m) or "crate"
            print(f"modules in a loop: {', '.join(sorted(show(m) for m in comp))}")
            print(f"  for one: {' -> '.join(show(m) for m in cycle + [cycle[0]])}")
            for x, y in zip(cycle, cycle[1:] + [cycle[0]]):
                for a, b, names in graph[x][y]:
                    print(f"    {files[a]} -> {files[b]}: {', '.join(sorted(names))}")
    if found:
        sys.stdout.flush()
        print(f"{found} module cycle(s): a module may not import, directly or not, one that imports it", file=sys.stderr)
        return 1
    return 0


def cycles(graph):
    """One cycle per strongly connected component with more than one node
    (Tarjan), as a list of nodes."""
    index, low, stack, on, comps, counter = {}, {}, [], set(), [], [0]
    nodes = set(graph) | {b for a in graph for b in graph[a]}

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, {}):
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
                comps.append(set(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    out = []
    for comp in comps:
        # A shortest loop through the component's first node.
        start = min(comp)
        prev, queue, path = {start: None}, [start], None
        while queue and path is None:
            v = queue.pop(0)
            for w in sorted(graph.get(v, {})):
                if w not in comp:
                    continue
                if w == start:
                    path = [v]
                    while prev[path[-1]] is not None:
                        path.append(prev[path[-1]])
                    path.reverse()
                    break
                if w not in prev:
                    prev[w] = v
                    queue.append(w)
        out.append((comp, path))
    return out


if __name__ == "__main__":
    sys.exit(main())
